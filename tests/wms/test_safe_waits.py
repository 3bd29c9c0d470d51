"""pymongo's condition waits give their lock back whatever cancels them (wms/database/safe_waits.py): on Python
3.11 its ``asyncio.wait_for`` could abandon a wait that then held the topology lock for ever, hanging the client."""

from __future__ import annotations

import asyncio

import pytest
from pymongo.asynchronous import pool, topology
from pymongo.lock import _async_create_condition, _async_create_lock

from wms.database import safe_waits  # importing wms.database installs the waits

TIMEOUT = 0.05


async def run_loop_steps(n: int = 20) -> None:
    """Let the other tasks take ``n`` steps (no I/O runs here, so this is deterministic)."""
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.mark.parametrize("module", safe_waits.PATCHED_MODULES, ids=lambda m: m.__name__)
async def test_a_wait_cancelled_while_its_timeout_is_taking_the_lock_back_leaves_the_lock_free(module) -> None:
    lock = _async_create_lock()
    condition = _async_create_condition(lock)

    async def waiter() -> None:  # what server selection and a pool checkout do
        async with lock:
            await module._async_cond_wait(condition, TIMEOUT)

    task = asyncio.create_task(waiter())
    await run_loop_steps()  # the waiter holds the condition and waits on it, the lock released
    await lock.acquire()  # someone else holds the lock when the wait times out and must take the lock back
    await asyncio.sleep(2 * TIMEOUT)
    await run_loop_steps()  # the timed-out wait now waits for the lock
    task.cancel()  # the waiter is cancelled (a lease attempt's budget, a daemon stopped) just before ...
    lock.release()  # ... the lock is free again: the waiter must take it back before it gives it up
    with pytest.raises(asyncio.CancelledError):
        await task
    await run_loop_steps()
    assert not lock.locked()
    async with asyncio.timeout(5):  # liveness bound: the next operation gets the lock
        async with lock:
            pass


async def test_a_wait_returns_false_on_timeout_and_true_when_notified_with_the_lock_held() -> None:
    lock = _async_create_lock()
    condition = _async_create_condition(lock)
    async with lock:
        assert await topology._async_cond_wait(condition, TIMEOUT) is False
        assert lock.locked()

    async def notify_soon() -> None:
        await run_loop_steps()
        async with lock:
            condition.notify()

    async with lock:
        notifier = asyncio.create_task(notify_soon())
        assert await pool._async_cond_wait(condition, None) is True
        assert lock.locked()
    await notifier
