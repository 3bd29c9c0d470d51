"""Database command timing: every command in the histogram, slow ones logged with the fields they filter on (never
their values)."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from wms.database.command_log import CommandLog


async def test_commands_are_timed_and_slow_ones_logged_without_values(
    mongo_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    log = CommandLog(registry, slow_ms=1e-6)  # every command counts as slow here
    client: AsyncMongoClient[dict] = AsyncMongoClient(mongo_uri, event_listeners=[log])
    coll = client["command-log-test"]["things"]
    try:
        with caplog.at_level(logging.WARNING, logger="wms.database.command_log"):
            await coll.insert_one({"owner": "alice", "secret": "s3cr3t"})
            assert await coll.find_one({"owner": "alice", "secret": "s3cr3t"}) is not None
    finally:
        await client.drop_database("command-log-test")
        await client.close()
    slow = [r.getMessage() for r in caplog.records if "find on things" in r.getMessage()]
    assert slow and slow[0].startswith("slow database command: find on things took ")
    assert slow[0].endswith(" ms (filter on owner, secret)") and "s3cr3t" not in caplog.text
    count = registry.get_sample_value("ewms_wms_db_command_seconds_count", {"command": "find", "collection": "things"})
    assert count == 1
    inserts = {"command": "insert", "collection": "things"}
    assert registry.get_sample_value("ewms_wms_db_command_seconds_count", inserts) == 1


async def test_nothing_is_logged_when_off(mongo_uri: str, caplog: pytest.LogCaptureFixture) -> None:
    client: AsyncMongoClient[dict] = AsyncMongoClient(mongo_uri, event_listeners=[CommandLog(CollectorRegistry(), 0)])
    try:
        with caplog.at_level(logging.WARNING, logger="wms.database.command_log"):
            await client["command-log-test"]["things"].find_one({})
    finally:
        await client.close()
    assert "slow database command" not in caplog.text
