"""Prometheus metrics of the WMS: requests by route and status, latency, taskforces by phase."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from wms.database.store import Store
from wms.lifecycle import Phase


class Metrics:
    """A private registry, so several WMS instances (tests) never share counters."""

    def __init__(self, refresh_seconds: float = 5.0) -> None:
        self.refresh_seconds = refresh_seconds
        self._refreshed_at: float | None = None
        self._refreshing = asyncio.Lock()
        self.registry = CollectorRegistry()
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.requests = Counter(
            "ewms_wms_requests", "HTTP requests served", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "ewms_wms_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.taskforces = Gauge("ewms_wms_taskforces", "Taskforces by phase", ["phase"], registry=self.registry)
        self.workflows = Gauge("ewms_wms_workflows", "Workflows by state", ["state"], registry=self.registry)
        self.daemon_lease_held = Gauge(
            "ewms_wms_daemon_lease_held",
            "1 while this instance holds the daemon lease and runs the daemons, else 0",
            registry=self.registry,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request (each label set's children are looked up once)."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
        children[0].inc()
        children[1].observe(seconds)

    async def render(self, store: Store) -> bytes:
        """The exposition text; the store-derived gauges are refreshed when older than ``refresh_seconds``, by one
        scrape at a time, so scrapes cost the database at most one round of counts per period."""
        async with self._refreshing:
            now = time.monotonic()
            if self._refreshed_at is None or now - self._refreshed_at >= self.refresh_seconds:
                await self._refresh(store)
                self._refreshed_at = time.monotonic()
        return bytes(generate_latest(self.registry))

    async def _refresh(self, store: Store) -> None:
        for phase in Phase:  # one indexed count each: an aggregation would read every taskforce
            self.taskforces.labels(str(phase)).set(await store.count(store.taskforces, {"phase": str(phase)}))
        active = await store.count(store.workflows, {"deactivated": None})
        total = await store.count(store.workflows, {})
        self.workflows.labels("active").set(active)
        self.workflows.labels("deactivated").set(total - active)
