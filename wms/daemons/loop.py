"""A resilient daemon loop: run a pass when woken or after a poll interval; survive errors with back-off."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

LOGGER = logging.getLogger(__name__)


class Wakeup:
    """A wake-up signal handlers use to make a daemon act at once instead of at its next poll."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        """Ask the daemon to run a pass now."""
        self._event.set()

    async def wait(self, seconds: float) -> None:
        """Wait until woken or ``seconds`` pass, then re-arm."""
        try:
            async with asyncio.timeout(seconds):
                await self._event.wait()
        except TimeoutError:
            pass
        self._event.clear()


@dataclass
class Wakeups:
    """The signals operations use to make a daemon act at once."""

    mq_activator: Wakeup = field(default_factory=Wakeup)
    launch: Wakeup = field(default_factory=Wakeup)
    retention: Wakeup = field(default_factory=Wakeup)


async def run_forever(
    name: str,
    one_pass: Callable[[], Awaitable[bool]],
    wakeup: Wakeup,
    poll_seconds: float,
    stop: asyncio.Event,
    max_backoff: float = 30.0,
) -> None:
    """Call ``one_pass`` until ``stop`` is set (set ``wakeup`` too, to stop at once).

    A pass returning True ("more work waits") is followed at once by another; a failing pass is logged and
    retried with exponential back-off.
    """
    backoff = poll_seconds
    LOGGER.info("%s started", name)
    while not stop.is_set():
        try:
            more = await one_pass()
            backoff = poll_seconds
        except asyncio.CancelledError:
            raise
        except Exception:
            LOGGER.exception("%s pass failed; retrying in %.1fs", name, backoff)
            await wakeup.wait(backoff)
            backoff = min(backoff * 2, max_backoff)
            continue
        if not more:
            await wakeup.wait(poll_seconds)
    LOGGER.info("%s stopped", name)
