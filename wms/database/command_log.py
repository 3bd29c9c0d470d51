"""What each database command costs: a Prometheus histogram by command and collection, and a warning for every
command slower than ``DB_SLOW_COMMAND_MS`` (an operator's first look when requests slow down: on the embedded
server one slow scan holds up every other command)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from pymongo import monitoring

LOGGER = logging.getLogger(__name__)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
IN_FLIGHT_MAX = 10_000  # started commands remembered until they end (a bound, should ends ever be missed)


class CommandLog(monitoring.CommandListener):
    """Times every command the client sends (register it with the client's ``event_listeners``)."""

    def __init__(self, registry: CollectorRegistry, slow_ms: float) -> None:
        self.slow_ms = slow_ms
        self.seconds = Histogram(
            "ewms_wms_db_command_seconds",
            "Database command latency as the WMS sees it",
            ["command", "collection"],
            buckets=BUCKETS,
            registry=registry,
        )
        self._commands: dict[int, Mapping[str, Any]] = {}
        self._observers: dict[tuple[str, str], Any] = {}  # the histogram's child per label pair, looked up once

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """Remember the command (only the start event carries it)."""
        if len(self._commands) >= IN_FLIGHT_MAX:
            self._commands.clear()
        self._commands[event.request_id] = event.command

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Observe it; warn when it was slow."""
        self._ended(event, "")

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Observe it too (a failure can be slow: a timeout)."""
        self._ended(event, f" and failed ({event.failure.get('errmsg', '?')})")

    def _ended(self, event: monitoring.CommandSucceededEvent | monitoring.CommandFailedEvent, outcome: str) -> None:
        command = self._commands.pop(event.request_id, {})
        target = command.get(event.command_name)
        collection = target if isinstance(target, str) else "-"
        key = (event.command_name, collection)
        observer = self._observers.get(key)
        if observer is None:
            observer = self._observers[key] = self.seconds.labels(*key)
        seconds = event.duration_micros / 1e6
        observer.observe(seconds)
        if self.slow_ms and seconds * 1000 >= self.slow_ms:
            LOGGER.warning(
                "slow database command: %s on %s took %.0f ms%s%s",
                event.command_name,
                collection,
                seconds * 1000,
                outcome,
                _shape(command),
            )


def _shape(command: Mapping[str, Any]) -> str:
    """The fields a query filters or an update selects on (names only: values may be user data)."""
    query = command.get("filter") or command.get("query")
    if query is None and isinstance(command.get("updates"), list) and command["updates"]:
        query = command["updates"][0].get("q")
    return f" (filter on {', '.join(sorted(query))})" if isinstance(query, dict) and query else ""
