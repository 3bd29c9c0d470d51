"""The WMS's side of the Message Queue Service: one interface, an embedded MQS (default) and a remote client.

Start-up in the WMS::

    config = MQSConfig.from_env(os.environ)
    mqs = make_mqs_client(db, config)        # remote when MQS_ADDRESS is set, else embedded
    await mqs.ensure_indexes()
    task = asyncio.create_task(mqs.run_housekeeping(stop_event))
    ...
    await mqs.close()
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase

from .config import ConfigError, MQSConfig
from .embedded import EmbeddedMQS
from .interface import (
    FAILED_EVENTS_ALIAS,
    MQProfile,
    MQSClient,
    MQSError,
    MQSNotFound,
    MQSNotSupported,
    QueueDepth,
    TryAgainLater,
)
from .remote import RemoteMQS

__all__ = [
    "FAILED_EVENTS_ALIAS",
    "ConfigError",
    "EmbeddedMQS",
    "MQProfile",
    "MQSClient",
    "MQSConfig",
    "MQSError",
    "MQSNotFound",
    "MQSNotSupported",
    "ManagedMQSClient",
    "QueueDepth",
    "RemoteMQS",
    "TryAgainLater",
    "make_mqs_client",
]


class ManagedMQSClient(MQSClient, Protocol):
    """An MQS client plus the start-up and background hooks the WMS process runs (no-ops for a remote MQS)."""

    async def ensure_indexes(self) -> None:
        """Create the database indexes the client relies on."""
        ...

    async def run_housekeeping(self, stop: asyncio.Event) -> None:
        """Background work (queue deletion, token refresh) until ``stop`` is set or the client is closed."""
        ...

    async def forget(self, workflow_id: str) -> list[dict[str, Any]] | None:
        """Delete the records of a retired workflow's queues; None while its queues still exist."""
        ...


def make_mqs_client(db: AsyncDatabase[dict[str, Any]], config: MQSConfig) -> ManagedMQSClient:
    """The remote client when ``MQS_ADDRESS`` is configured, else the embedded MQS on ``db``."""
    if config.remote:
        return RemoteMQS(config)
    return EmbeddedMQS(db, config)
