"""Database command timing: every command the store's database sends is in the histogram (checked against pymongo's
own command monitoring, which sees the wire), slow ones logged with the fields they filter on (never their values)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient, UpdateOne, monitoring
from pymongo.errors import DuplicateKeyError

from wms.database.command_log import CommandLog
from wms.database.timed import TimedDatabase

DB = "command-log-test"
METRIC = "ewms_wms_db_command_seconds_count"


class WireCommands(monitoring.CommandListener):
    """The commands pymongo sent, by name (the truth the timing is checked against)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def counted(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """The histogram's counts per (command, collection)."""
    return {
        (sample.labels["command"], sample.labels["collection"]): sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == METRIC
    }


async def test_every_command_sent_is_timed_once(mongo_uri: str) -> None:
    wire = WireCommands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, event_listeners=[wire])
    registry = CollectorRegistry()
    db = TimedDatabase(client, DB, CommandLog(registry, 0))
    things = db["things"]
    try:
        await things.create_index("n", unique=True)
        await things.insert_many([{"n": n} for n in range(250)])
        assert len(await things.find({}, batch_size=100).to_list(None)) == 250  # find, then two getMores
        assert [doc["n"] async for doc in things.find({"n": {"$lt": 3}}).sort("n")] == [0, 1, 2]
        assert (await things.find_one({"n": 7}))["n"] == 7  # type: ignore[index]
        await things.update_one({"n": 7}, {"$set": {"seven": True}})
        await things.find_one_and_update({"n": 8}, {"$set": {"eight": True}})
        await things.bulk_write([UpdateOne({"n": 9}, {"$set": {"nine": True}})])
        assert (await db.command("count", "things", query={"n": {"$gte": 200}}))["n"] == 50
        with pytest.raises(DuplicateKeyError):
            await things.insert_one({"n": 1})
        await db.get_collection("others").delete_many({"n": 1})
        sent = list(wire.names)
    finally:
        await client.drop_database(DB)
        await client.close()
    assert sent.count("getMore") == 2
    seen = counted(registry)
    assert sum(seen.values()) == len(sent) == 13  # no command missed, none counted twice
    assert seen[("find", "things")] == 3 and seen[("getMore", "things")] == 2
    assert seen[("insert_one", "things")] == 1  # the refused one is counted too
    assert seen[("count", "things")] == 1 and seen[("delete_many", "others")] == 1


async def test_slow_commands_are_logged_without_values(mongo_uri: str, caplog: pytest.LogCaptureFixture) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    db = TimedDatabase(client, DB, CommandLog(CollectorRegistry(), slow_ms=1e-6))  # every command counts as slow
    things = db["things"]
    try:
        with caplog.at_level(logging.WARNING, logger="wms.database.command_log"):
            await things.insert_one({"owner": "alice", "secret": "s3cr3t"})
            assert await things.find_one({"owner": "alice", "secret": "s3cr3t"}) is not None
            await things.update_one({"secret": "s3cr3t"}, {"$set": {"seen": True}})
            await db.command("count", "things", query={"owner": {"$eq": "alice"}})
            await things.bulk_write(
                [UpdateOne({"owner": "alice"}, {"$set": {"n": 1}}), UpdateOne({"secret": "x"}, {"$set": {"n": 2}})]
            )
            with pytest.raises(DuplicateKeyError):
                await things.insert_one({"_id": (await things.find_one({}))["_id"]})  # type: ignore[index]
    finally:
        await client.drop_database(DB)
        await client.close()
    lines = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("slow database command: find on things took ") for m in lines)
    assert any(m.endswith(" ms (filter on owner, secret)") and " find on things " in m for m in lines)
    assert any(" update_one on things " in m and m.endswith("(filter on secret)") for m in lines)
    assert any(" count on things " in m and m.endswith("(filter on owner)") for m in lines)
    assert any(" bulk_write on things " in m and m.endswith("(filter on owner, secret)") for m in lines)
    assert any(" insert_one on things " in m and m.endswith(" and failed (DuplicateKeyError)") for m in lines)
    assert "s3cr3t" not in caplog.text and "alice" not in caplog.text


async def test_nothing_is_logged_when_off(mongo_uri: str, caplog: pytest.LogCaptureFixture) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    registry = CollectorRegistry()
    try:
        with caplog.at_level(logging.WARNING, logger="wms.database.command_log"):
            await TimedDatabase(client, DB, CommandLog(registry, 0))["things"].find_one({})
    finally:
        await client.close()
    assert "slow database command" not in caplog.text
    assert counted(registry) == {("find", "things"): 1}
