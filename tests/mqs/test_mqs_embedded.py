"""The embedded MQS against the private RabbitMQ node and the wire-protocol MongoDB."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import jwt
import pika
import pytest
from broker_probe import queue_exists
from mqs_helpers import (
    connect,
    mqclient_roundtrip,
    pika_publish,
    pika_roundtrip,
    vhost_exists,
    vhost_of,
    wait_until_deleted,
)
from pymongo.asynchronous.database import AsyncDatabase

from ewms_dev.broker_node import BrokerNode
from ewms_dev.processes import free_port
from mqs_client import FAILED_EVENTS_ALIAS, EmbeddedMQS, MQSError, MQSNotFound, TryAgainLater

MakeMQS = Callable[..., EmbeddedMQS]


async def test_reserve_one_profile_per_alias_and_idempotent(mqs: EmbeddedMQS, broker: BrokerNode) -> None:
    profiles = await mqs.reserve("WF-1", ["in", "out", "in"], ["in"])
    assert [p.alias for p in profiles] == ["in", "out", FAILED_EVENTS_ALIAS]
    vhost = vhost_of(profiles[0])
    assert re.fullmatch(r"ewms-WF-1-[0-9a-f]{12}", vhost)
    for profile in profiles:
        assert re.fullmatch(r"a[0-9a-f]{20}", profile.mqid)
        assert profile.workflow_id == "WF-1"
        assert not profile.is_activated and profile.auth_token is None
        assert (profile.broker_type, profile.broker_address) == ("rabbitmq", f"{broker.address}/{vhost}")
    assert [p.is_public for p in profiles] == [True, False, True]

    again = await mqs.reserve("WF-1", ["out", "in"], ["in"])
    assert {p.mqid for p in again} == {p.mqid for p in profiles}
    public = [p.to_dict() for p in await mqs.get_public_profiles("WF-1")]
    assert public == [profiles[0].to_dict(), profiles[2].to_dict()]

    with pytest.raises(MQSError, match="already reserved"):
        await mqs.reserve("WF-1", ["in", "other"], [])


async def test_concurrent_reservations_agree(mqs: EmbeddedMQS, db: AsyncDatabase[dict[str, Any]]) -> None:
    results = await asyncio.gather(*(mqs.reserve("WF-race", ["a", "b", "c"], ["a"]) for _ in range(8)))
    mqids = {tuple(p.mqid for p in profiles) for profiles in results}
    assert len(mqids) == 1
    assert await db["mq_groups"].count_documents({}) == 1
    assert await db["mq_profiles"].count_documents({"workflow_id": "WF-race"}) == 4


async def test_bad_input_and_unknown_ids(mqs: EmbeddedMQS) -> None:
    with pytest.raises(MQSError, match="at least one"):
        await mqs.reserve("WF-bad", [], [])
    with pytest.raises(MQSError, match="not among"):
        await mqs.reserve("WF-bad", ["in"], ["out"])
    with pytest.raises(MQSError, match="non-empty strings"):
        await mqs.reserve("WF-bad", ["in", ""], [])
    with pytest.raises(MQSError, match="reserved for the failed-events"):
        await mqs.reserve("WF-bad", ["in", FAILED_EVENTS_ALIAS], [])
    for call in (
        mqs.activate("WF-unknown", 10),
        mqs.get_public_profiles("WF-unknown"),
        mqs.deactivate("WF-unknown"),
        mqs.get_profiles(["a0000000000000000000"]),
    ):
        with pytest.raises(MQSNotFound):
            await call


async def test_activate_then_publish_and_consume(mqs: EmbeddedMQS, broker: BrokerNode, broker_signing_key: str) -> None:
    reserved = await mqs.reserve("WF-2", ["in", "out"], ["in"])
    profiles = await mqs.activate("WF-2", priority=5)
    assert [p.mqid for p in profiles] == [p.mqid for p in reserved]
    vhost = vhost_of(profiles[0])
    for profile in profiles:
        assert profile.is_activated and profile.auth_token
        claims = jwt.decode(profile.auth_token, broker_signing_key, algorithms=["HS256"], audience="rabbitmq")
        assert claims["sub"] == "WF-2"
        assert claims["exp"] > time.time() + 86000
        assert set(claims["scope"].split()) == {
            f"rabbitmq.read:{vhost}/{profile.mqid}",
            f"rabbitmq.write:{vhost}/{profile.mqid}",
            f"rabbitmq.configure:{vhost}/{profile.mqid}",
            f"rabbitmq.write:{vhost}/amq.default",
        }
        assert queue_exists(broker.admin_url, profile.mqid, vhost)

    events = [{"n": 1, "text": "hello"}, {"n": 2, "text": "world"}]
    assert await mqclient_roundtrip(profiles[0], events) == events
    assert await mqclient_roundtrip(profiles[1], [[1, 2, 3]]) == [[1, 2, 3]]
    out = profiles[1]
    assert pika_roundtrip(str(out.broker_address), str(out.auth_token), out.mqid, b"raw") == b"raw"

    again = await mqs.activate("WF-2", priority=5)
    assert [p.auth_token for p in again] == [p.auth_token for p in profiles]
    assert await mqs.get_profiles([profiles[1].mqid, profiles[0].mqid]) == [profiles[1], profiles[0]]
    public = await mqs.get_public_profiles("WF-2")
    assert [p.mqid for p in public] == [profiles[0].mqid, profiles[2].mqid] and public[0].is_activated


async def test_token_cannot_touch_another_queue(mqs: EmbeddedMQS, broker: BrokerNode) -> None:
    await mqs.reserve("WF-3", ["a", "b"], [])
    mine, other, _failed = await mqs.activate("WF-3", priority=1)
    assert mine.auth_token and mine.broker_address
    with connect(mine.broker_address, mine.auth_token) as conn:
        for action in (
            lambda ch: ch.queue_declare(other.mqid, durable=True, arguments={"x-queue-type": "quorum"}),
            lambda ch: ch.basic_get(other.mqid),
            lambda ch: ch.basic_consume(other.mqid, lambda *_: None),
            lambda ch: ch.queue_purge(other.mqid),
            lambda ch: ch.queue_delete(other.mqid),
        ):
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
                action(conn.channel())
            assert refused.value.reply_code == 403
    claims = jwt.decode(mine.auth_token, options={"verify_signature": False})
    forged = jwt.encode(claims, "not-the-broker-key-but-32-bytes-long", algorithm="HS256")
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        connect(mine.broker_address, forged)


async def test_expired_token_refused_then_refreshed(make_mqs: MakeMQS, broker: BrokerNode) -> None:
    mqs = make_mqs(broker_token_ttl_seconds=3, broker_token_refresh_margin_seconds=1)
    await mqs.ensure_indexes()
    await mqs.reserve("WF-4", ["in", "out"], ["in"])
    first_in, first_out, _failed = await mqs.activate("WF-4", priority=1)
    assert first_in.auth_token and first_out.auth_token
    address = str(first_in.broker_address)
    expiry = jwt.decode(first_in.auth_token, options={"verify_signature": False})["exp"]
    with connect(address, first_in.auth_token) as open_before:
        channel = open_before.channel()
        await asyncio.sleep(expiry + 1.1 - time.time())  # both tokens are now expired
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="expired"):  # even on an open connection
            channel.queue_declare(first_in.mqid, durable=True, arguments={"x-queue-type": "quorum"})
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        connect(address, first_in.auth_token)

    renewed, _renewed_failed = await mqs.get_public_profiles("WF-4")
    assert renewed.auth_token and renewed.auth_token != first_in.auth_token
    assert await mqs.get_profiles([renewed.mqid]) == [renewed]  # stored, not minted again
    assert pika_roundtrip(address, renewed.auth_token, renewed.mqid, b"fresh") == b"fresh"

    await mqs.housekeep()  # the background refresher renews the other queue's token
    (out,) = await mqs.get_profiles([first_out.mqid])
    assert out.auth_token and out.auth_token != first_out.auth_token
    assert pika_roundtrip(address, out.auth_token, out.mqid, b"also fresh") == b"also fresh"


async def test_deactivate_deletes_queues_after_grace(mqs: EmbeddedMQS, make_mqs: MakeMQS, broker: BrokerNode) -> None:
    await mqs.reserve("WF-5", ["in", "out"], ["in"])
    profiles = await mqs.activate("WF-5", priority=1)
    vhost = vhost_of(profiles[0])
    pika_publish(str(profiles[0].broker_address), str(profiles[0].auth_token), profiles[0].mqid, b"left behind")
    await mqs.reserve("WF-never-active", ["x"], [])

    patient = make_mqs(mq_delete_grace_seconds=600)
    await mqs.deactivate("WF-5")
    await patient.housekeep()  # within its grace: nothing deleted
    assert all(queue_exists(broker.admin_url, p.mqid, vhost) for p in profiles)

    await mqs.deactivate("WF-5")  # a repeat is harmless
    await mqs.deactivate("WF-never-active")  # never created: deleting is still fine
    await mqs.housekeep()
    assert not vhost_exists(broker.management_url, vhost)
    assert not any(queue_exists(broker.admin_url, p.mqid, vhost) for p in profiles)
    for profile in await mqs.get_profiles([p.mqid for p in profiles]):
        assert not profile.is_activated and profile.auth_token is None
    await mqs.housekeep()
    await mqs.deactivate("WF-5")
    with pytest.raises(MQSError, match="deactivated"):
        await mqs.activate("WF-5", priority=1)


async def test_tokens_of_deactivated_workflows_are_not_refreshed(make_mqs: MakeMQS) -> None:
    mqs = make_mqs(broker_token_ttl_seconds=2, broker_token_refresh_margin_seconds=1.999, mq_delete_grace_seconds=600)
    await mqs.reserve("WF-6", ["in"], ["in"])
    await mqs.reserve("WF-6-still-active", ["in"], ["in"])
    retired = await mqs.activate("WF-6", priority=1)
    active = await mqs.activate("WF-6-still-active", priority=1)
    await mqs.deactivate("WF-6")
    await asyncio.sleep(1.1)  # both tokens are now within the refresh margin
    await mqs.housekeep()
    assert await mqs.get_public_profiles("WF-6") == retired
    refreshed = await mqs.get_public_profiles("WF-6-still-active")
    assert all(new.auth_token != old.auth_token for new, old in zip(refreshed, active, strict=True))


async def test_broker_down_means_try_again_later(
    make_mqs: MakeMQS, db: AsyncDatabase[dict[str, Any]], broker: BrokerNode, caplog: pytest.LogCaptureFixture
) -> None:
    down = make_mqs(broker_management_url=f"http://guest:guest@127.0.0.1:{free_port()}")
    await down.ensure_indexes()
    reserved = await down.reserve("WF-7", ["in"], ["in"])
    with pytest.raises(TryAgainLater, match="cannot reach"):
        await down.activate("WF-7", priority=1)
    assert await down.get_profiles([p.mqid for p in reserved]) == reserved  # nothing half-activated

    refusing = make_mqs(broker_management_url=f"http://guest:wrong@127.0.0.1:{broker.management_port}")
    with pytest.raises(TryAgainLater, match="401"):
        await refusing.activate("WF-7", priority=1)

    active, _failed = await make_mqs().activate("WF-7", priority=1)  # the retry succeeds
    vhost = vhost_of(active)
    assert active.is_activated and queue_exists(broker.admin_url, active.mqid, vhost)

    await down.deactivate("WF-7")
    with caplog.at_level(logging.WARNING, logger="mqs_client.embedded"):
        await down.housekeep()
    assert "not deleted yet" in caplog.text
    assert queue_exists(broker.admin_url, active.mqid, vhost)
    await make_mqs().housekeep()
    assert not vhost_exists(broker.management_url, vhost)


async def test_housekeeping_loop_survives_errors_and_stops(
    mqs: EmbeddedMQS, broker: BrokerNode, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await mqs.reserve("WF-8", ["in"], [])
    profile, _failed = await mqs.activate("WF-8", priority=1)
    real_delete = mqs._delete_due_queues
    failures: list[int] = []

    async def flaky() -> None:
        if not failures:
            failures.append(1)
            raise RuntimeError("database hiccup")
        await real_delete()

    monkeypatch.setattr(mqs, "_delete_due_queues", flaky)
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="mqs_client.embedded"):
        loop = asyncio.create_task(mqs.run_housekeeping(stop))
        await mqs.deactivate("WF-8")
        await asyncio.to_thread(wait_until_deleted, broker.admin_url, profile.mqid, 10, vhost_of(profile))
        stop.set()
        await asyncio.wait_for(loop, 2)
    assert not vhost_exists(broker.management_url, vhost_of(profile))
    assert "housekeeping pass failed" in caplog.text and "database hiccup" in caplog.text
    assert f"deleted vhost {vhost_of(profile)} with the 2 queue(s) of workflow WF-8" in caplog.text

    loop = asyncio.create_task(mqs.run_housekeeping(asyncio.Event()))
    await asyncio.sleep(0.1)
    await mqs.close()
    await asyncio.wait_for(loop, 2)
