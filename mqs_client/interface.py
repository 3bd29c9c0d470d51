"""The Message Queue Service interface the WMS calls: one contract for the embedded and the remote MQS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ewms_wire.failed_events import FAILED_EVENTS_ALIAS as FAILED_EVENTS_ALIAS  # re-exported


@dataclass
class MQProfile:
    """One queue of a workflow, as EWMS MQS ``MQProfileObject``."""

    mqid: str
    workflow_id: str
    timestamp: float
    alias: str
    is_public: bool
    is_activated: bool
    auth_token: str | None
    broker_type: str | None
    broker_address: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> MQProfile:
        """Build from a stored or received document (unknown keys ignored).

        Flags are coerced to ``bool``: the embedded wire-protocol server returns booleans set by updates as 0/1.
        """
        fields = {k: doc.get(k) for k in cls.__dataclass_fields__}
        fields["is_public"] = bool(fields["is_public"])
        fields["is_activated"] = bool(fields["is_activated"])
        return cls(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class QueueDepth:
    """Messages in one queue as the broker counts them; ``None`` where it has no figure (not yet, or no longer)."""

    mqid: str
    alias: str
    ready: int | None
    unacknowledged: int | None
    consumers: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class MQSError(Exception):
    """The MQS refused a request (a client error that retrying will not fix)."""


class MQSNotFound(MQSError):
    """The workflow or queue is unknown to the MQS."""


class MQSNotSupported(MQSError):
    """The MQS has no such operation (a remote MQS without the route)."""


class TryAgainLater(Exception):
    """The MQS cannot act now (broker unreachable or refusing); the caller retries with back-off."""


class MQSClient(Protocol):
    """What the WMS needs from a Message Queue Service."""

    async def reserve(self, workflow_id: str, queue_aliases: Sequence[str], public: Sequence[str]) -> list[MQProfile]:
        """Reserve one queue per alias; idempotent per workflow (a repeat returns the same profiles)."""
        ...

    async def activate(self, workflow_id: str, priority: int) -> list[MQProfile]:
        """Create the workflow's queues and mint tokens; raises TryAgainLater, MQSNotFound."""
        ...

    async def get_profiles(self, mqids: Sequence[str]) -> list[MQProfile]:
        """Bulk read of profiles with currently valid tokens (refreshed when close to expiry)."""
        ...

    async def get_public_profiles(self, workflow_id: str) -> list[MQProfile]:
        """The workflow's public profiles (may be not yet activated); raises MQSNotFound."""
        ...

    async def renew_token(self, workflow_id: str, mqid: str) -> MQProfile:
        """The profile of the workflow's queue with a token valid for the full TTL from now (for a pilot that
        outlives its token); raises MQSNotFound (not a queue of that workflow), MQSError (the queue is not active)."""
        ...

    async def queue_depths(self, workflow_id: str) -> list[QueueDepth]:
        """Ready, unacknowledged and consumers of each of the workflow's queues (the broker's statistics, a few
        seconds stale); raises MQSNotFound, MQSNotSupported, TryAgainLater."""
        ...

    async def queue_depths_of(self, workflow_ids: Sequence[str]) -> dict[str, list[QueueDepth]]:
        """:meth:`queue_depths` of each workflow whose queues are active, in one broker read (workflows without
        active queues are left out); raises MQSNotSupported, TryAgainLater."""
        ...

    async def deactivate(self, workflow_id: str) -> None:
        """Retire the workflow's queues: they are deleted after the configured grace period."""
        ...

    async def close(self) -> None:
        """Release connections and stop background work."""
        ...
