"""Provision RabbitMQ through its management HTTP API: one virtual host per workflow, its policies, limits and queues.

Queues are declared exactly as oms-mqclient declares them (durable, quorum), so a user's or pilot's redeclare never
conflicts; delivery limits, dead-lettering and length limits come from policies, never queue arguments. Every call
is idempotent (``PUT`` / ``DELETE`` / ``GET``), so one that fails on a kept-alive connection the broker dropped (e.g.
after a restart) is retried once on a new connection.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

LOGGER = logging.getLogger(__name__)

QUEUE_ARGUMENTS = {"x-queue-type": "quorum"}
DEPTH_COLUMNS = "name,messages_ready,messages_unacknowledged,consumers"


class BrokerUnavailable(Exception):
    """The broker could not be reached, refused the admin login, or refused the operation."""


@dataclass(frozen=True)
class Policy:
    """A user policy on a vhost's queues (the highest ``priority`` among matching policies applies, alone)."""

    name: str
    pattern: str
    definition: dict[str, Any]
    priority: int = 0


def workflow_policies(failed_queue: str, max_length: int, max_length_bytes: int, delivery_limit: int) -> list[Policy]:
    """One policy for a workflow's work queues (length limits, delivery limit, dead-lettering to ``failed_queue``)
    and one of higher priority for ``failed_queue`` itself (limits only: it never dead-letters into itself)."""
    limits = {
        "max-length": max_length,
        "max-length-bytes": max_length_bytes,
        "overflow": "reject-publish",  # also what makes at-least-once dead-lettering work
    }
    work = limits | {
        "delivery-limit": delivery_limit,
        "dead-letter-exchange": "",
        "dead-letter-routing-key": failed_queue,
        "dead-letter-strategy": "at-least-once",
    }
    return [
        Policy("ewms-work-queues", ".*", work),
        Policy("ewms-failed-events", f"^{failed_queue}$", limits, priority=1),
    ]


@dataclass(frozen=True)
class QueueStats:
    """What the management API reports for one queue; ``None`` until its first statistics interval."""

    name: str
    ready: int | None
    unacknowledged: int | None
    consumers: int | None


def _stats(queue: dict[str, Any]) -> QueueStats:
    return QueueStats(
        queue["name"], queue.get("messages_ready"), queue.get("messages_unacknowledged"), queue.get("consumers")
    )


def _path(*parts: str) -> str:
    return "/api/" + "/".join(urllib.parse.quote(part, safe="") for part in parts)


class BrokerAdmin:
    """Management API calls as the account of ``management_url`` (``http[s]://USER:PASSWORD@host:port``)."""

    def __init__(self, management_url: str, timeout: float = 5.0) -> None:
        parts = urllib.parse.urlsplit(management_url)
        self.user = urllib.parse.unquote(parts.username or "")
        password = urllib.parse.unquote(parts.password or "")
        self.where = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        base = urllib.parse.urlunsplit((parts.scheme, self.where, parts.path.rstrip("/"), "", ""))
        self._http = httpx.AsyncClient(base_url=base, auth=(self.user, password), timeout=timeout)

    async def create_vhost(self, vhost: str, policies: Sequence[Policy], max_queues: int) -> None:
        """Create ``vhost`` (or leave it), grant this account on it, cap its queues and set its policies."""
        await self._call("PUT", _path("vhosts", vhost), {"description": "EWMS workflow queues", "tags": ""})
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        await self._call("PUT", _path("permissions", vhost, self.user), everything)
        await self._call("PUT", _path("vhost-limits", vhost, "max-queues"), {"value": max_queues})
        for policy in policies:
            body = {
                "pattern": policy.pattern,
                "definition": policy.definition,
                "priority": policy.priority,
                "apply-to": "queues",
            }
            await self._call("PUT", _path("policies", vhost, policy.name), body)

    async def declare_queues(self, vhost: str, names: Sequence[str]) -> None:
        """Create the queues (durable quorum); existing ones are left as they are."""
        for name in names:
            body = {"durable": True, "auto_delete": False, "arguments": QUEUE_ARGUMENTS}
            await self._call("PUT", _path("queues", vhost, name), body)
        LOGGER.debug("declared %d queue(s) in vhost %s on %s", len(names), vhost, self.where)

    async def delete_vhost(self, vhost: str) -> None:
        """Delete the vhost with its queues, messages and policies, closing its connections; gone already is fine."""
        await self._call("DELETE", _path("vhosts", vhost), missing_ok=True)

    async def queue_stats(self, vhost: str) -> list[QueueStats]:
        """Depth and consumers of every queue of the vhost, in one call; no queues when the vhost is gone."""
        response = await self._call("GET", _path("queues", vhost), params={"columns": DEPTH_COLUMNS}, missing_ok=True)
        if response.status_code == 404:
            return []
        return [_stats(q) for q in response.json()]

    async def all_queue_stats(self) -> dict[str, list[QueueStats]]:
        """:meth:`queue_stats` of every vhost this account sees, by vhost, in one call."""
        response = await self._call("GET", "/api/queues", params={"columns": f"vhost,{DEPTH_COLUMNS}"})
        stats: dict[str, list[QueueStats]] = {}
        for q in response.json():
            stats.setdefault(q["vhost"], []).append(_stats(q))
        return stats

    async def close(self) -> None:
        """Close the kept connections (a later call opens a new one)."""
        await self._http.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        missing_ok: bool = False,
    ) -> httpx.Response:
        """Send once, and once more on a transport error; raise BrokerUnavailable for errors and refusals."""
        for attempt in (1, 2):
            try:
                response = await self._http.request(method, path, json=body, params=params)
                break
            except httpx.TransportError as exc:
                if attempt == 2:
                    raise BrokerUnavailable(f"cannot reach the management API at {self.where}: {exc!r}") from exc
                LOGGER.info("management call %s %s to %s failed (%r); retrying once", method, path, self.where, exc)
        if response.status_code == 404 and missing_ok:
            return response
        if response.status_code >= 400:
            raise BrokerUnavailable(
                f"broker at {self.where} answered {response.status_code} to {method} {path}: {response.text[:300]}"
            )
        return response
