"""Helpers shared by the TMS loops: interruptible waits and a resilient poll loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from tms import metrics

LOGGER = logging.getLogger(__name__)


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, returning early when ``stop`` is set."""
    if seconds <= 0:
        await asyncio.sleep(0)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def poll_loop(
    name: str,
    step: Callable[[], Awaitable[bool]],
    stop: asyncio.Event,
    idle_wait: float,
    error_wait: float,
) -> None:
    """Call ``step`` until ``stop``: again at once when it did work, after ``idle_wait`` when it had none.

    An exception is logged and the loop pauses (1 s, doubling up to ``error_wait``) before trying again.
    """
    first_pause = min(1.0, error_wait)
    pause = first_pause
    while not stop.is_set():
        try:
            did_work = await step()
            pause = first_pause
        except Exception:
            LOGGER.exception("%s failed; trying again in %.0fs", name, pause)
            metrics.LOOP_ERRORS.labels(name).inc()
            await wait_or_stop(stop, pause)
            pause = min(pause * 2, error_wait)
            continue
        await wait_or_stop(stop, 0 if did_work else idle_wait)
