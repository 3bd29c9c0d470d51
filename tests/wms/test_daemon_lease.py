"""The daemon lease on the real database: concurrent contenders never both hold it, a renewed lease is never taken,
an abandoned one is taken only after its lease time, by one contender, once the old holder has given up."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from wms.daemons.lease import DaemonLease
from wms.database.leases import LeaseRecords


@pytest.fixture
async def db(mongo_uri: str) -> AsyncIterator[AsyncDatabase[dict[str, object]]]:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_uri)
    yield client[f"lease_{secrets.token_hex(4)}"]
    await client.close()


def contenders(db: AsyncDatabase[dict[str, object]], n: int, lease_seconds: float) -> list[DaemonLease]:
    """``n`` instances contending for one lease, each with its own records object (as separate processes have)."""
    return [DaemonLease(LeaseRecords(db, "daemons"), f"instance-{i}", lease_seconds) for i in range(n)]


async def test_of_concurrent_contenders_for_a_free_lease_exactly_one_wins(db) -> None:  # type: ignore[no-untyped-def]
    leases = contenders(db, 8, 30.0)
    for _ in range(5):  # the holder renews, the others keep trying, all at once
        won = await asyncio.gather(*(lease.attempt() for lease in leases))
        assert sum(won) == 1 and sum(lease.held() for lease in leases) == 1
    holder = next(lease for lease in leases if lease.held())
    assert (await holder.records.read()).holder == holder.instance_id


async def test_an_abandoned_lease_goes_to_exactly_one_contender_after_the_holder_stopped(db) -> None:  # type: ignore[no-untyped-def]
    lease_seconds = 1.0
    first, *others = contenders(db, 6, lease_seconds)
    assert await first.attempt()
    abandoned = time.monotonic()  # the holder stops renewing (as if it died or lost the database)
    winner = None
    while winner is None:
        won = await asyncio.gather(*(lease.attempt() for lease in others))
        holders = [lease for lease in [first, *others] if lease.held()]
        assert len(holders) <= 1, [lease.instance_id for lease in holders]  # never two at once
        assert sum(won) <= 1
        if any(won):
            winner = others[won.index(True)]
            assert not first.held()  # the old holder had given up before
            assert time.monotonic() - abandoned >= lease_seconds  # not before the lease time
        assert time.monotonic() - abandoned < 30, "liveness bound: nobody took the abandoned lease"
        await asyncio.sleep(0.02)
    # the old holder comes back: its renewal fails, it does not hold the lease
    assert not await first.attempt() and not first.held()
    assert (await first.records.read()).holder == winner.instance_id


async def test_a_lease_renewed_in_time_is_never_taken(db) -> None:  # type: ignore[no-untyped-def]
    holder, contender = contenders(db, 2, 0.8)
    ends = time.monotonic() + 3 * holder.lease_seconds
    while time.monotonic() < ends:
        assert await holder.attempt()  # a renewal per round: well inside the lease time
        assert not await contender.attempt()
        await asyncio.sleep(0.05)


async def test_a_released_lease_is_taken_at_once(db) -> None:  # type: ignore[no-untyped-def]
    holder, contender = contenders(db, 2, 60.0)
    assert await holder.attempt()
    assert not await contender.attempt()
    await holder.release()
    assert not holder.held()
    assert await contender.attempt()  # no need to wait out the 60 s lease
