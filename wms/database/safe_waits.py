"""Condition waits of pymongo's async client that survive cancellation on Python 3.11.

pymongo's async client waits on its topology and pool conditions with ``asyncio.wait_for``. On Python 3.11, a task
cancelled while ``wait_for`` is cancelling its timed-out inner wait returns at once and abandons that inner wait
(CPython gh-86296, fixed in 3.12 by building ``wait_for`` on ``asyncio.timeout``). The caller then releases a lock it
no longer holds, and the abandoned wait takes the lock later and never gives it back: every later operation of the
client hangs. The WMS cancels database calls (a daemon lease attempt that outlives its budget, daemons stopped when
the lease is lost), so during a database outage this hung a whole WMS. :func:`install` makes those waits use
``asyncio.timeout`` in the waiting task itself, as Python 3.12 does.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from types import ModuleType
from typing import Any

from pymongo.asynchronous import pool, topology

LOGGER = logging.getLogger(__name__)

PATCHED_MODULES: tuple[ModuleType, ...] = (pool, topology)  # the modules whose code calls ``_async_cond_wait``


async def cond_wait(condition: Any, seconds: float | None) -> bool:
    """Wait on ``condition`` (its lock held) for at most ``seconds`` (None: no limit); False when the time ran out.
    The lock is held again whenever this returns or raises."""
    try:
        async with asyncio.timeout(seconds):
            return bool(await condition.wait())
    except TimeoutError:
        return False


def install() -> None:
    """Use :func:`cond_wait` in pymongo's async pool and topology (before Python 3.12 only). A pymongo that no
    longer waits through ``_async_cond_wait`` is left alone with a warning (``tests/wms/test_safe_waits.py`` fails
    then, so that the change is reviewed)."""
    if sys.version_info >= (3, 12):
        return
    for module in PATCHED_MODULES:
        if hasattr(module, "_async_cond_wait"):
            module._async_cond_wait = cond_wait  # type: ignore[attr-defined]
        else:
            LOGGER.warning("%s has no _async_cond_wait: its waits are not made cancellation-safe", module.__name__)
