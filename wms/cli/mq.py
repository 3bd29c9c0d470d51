"""A workflow's public queue by alias, opened with oms-mqclient, and broker failures as CLI errors."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import time
from collections.abc import Iterator
from typing import Any

import mqclient
import pika.exceptions
from mqclient.broker_client_interface import MQClientException

from ewms_client import WMSClient
from wms.cli.exits import CLIError, Exit

POLL_SECONDS = 0.5
IDLE_SECONDS = 60  # a subscription ends after this long without a message, unless told otherwise


async def find_queue(wms: WMSClient, workflow_id: str, alias: str, wait: float) -> dict[str, Any]:
    """The profile of the public queue ``alias``, once activated (waiting up to ``wait`` seconds)."""
    deadline = time.monotonic() + wait
    while True:
        profiles = await wms.public_queues(workflow_id)
        found = [p for p in profiles if p["alias"] == alias]
        if not found:
            aliases = sorted(p["alias"] for p in profiles)
            near = difflib.get_close_matches(alias, aliases, n=1)
            guess = f"; did you mean {near[0]!r}?" if near else ""
            public = ", ".join(aliases) or "none"
            raise CLIError(
                f"workflow {workflow_id} has no public queue {alias!r} (public: {public}){guess}", Exit.API_ERROR
            )
        if found[0]["is_activated"]:
            return found[0]
        if time.monotonic() >= deadline:
            raise CLIError(f"queue {alias!r} of {workflow_id} was not activated within {wait:g} s", Exit.TIMEOUT)
        await asyncio.sleep(POLL_SECONDS)


def open_queue(profile: dict[str, Any], idle_timeout: int = IDLE_SECONDS) -> mqclient.Queue:
    """An oms-mqclient queue for the profile; a subscription ends after ``idle_timeout`` s without a message."""
    return mqclient.Queue(
        profile["broker_type"],
        address=profile["broker_address"],
        name=profile["mqid"],
        auth_token=profile["auth_token"],
        timeout=idle_timeout,
    )


@contextlib.contextmanager
def broker_errors(profile: dict[str, Any]) -> Iterator[None]:
    """Turn broker and mqclient failures into an 'unavailable' CLI error naming the queue."""
    try:
        yield
    except (MQClientException, pika.exceptions.AMQPError) as exc:
        where = f"queue {profile['alias']!r} ({profile['mqid']}) at {profile['broker_address']}"
        raise CLIError(f"broker error on {where}: {type(exc).__name__}: {exc}", Exit.UNAVAILABLE) from exc
