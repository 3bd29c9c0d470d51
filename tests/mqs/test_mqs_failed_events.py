"""Issue 15 on the MQS side: the failed-events queue with broker dead-lettering, and queue depths from the broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pika
import pytest
from mqs_helpers import connect, pika_publish

from mqs_client import FAILED_EVENTS_ALIAS, EmbeddedMQS, MQSNotFound, QueueDepth

MakeMQS = Callable[..., EmbeddedMQS]


def _nack_until_gone(address: str, token: str, queue: str) -> int:
    """Take the queue's message and nack it with requeue until the broker stops delivering it; the deliveries."""
    deliveries = 0
    with connect(address, token) as conn:
        channel = conn.channel()
        deadline = time.monotonic() + 20  # liveness bound: redeliveries are immediate
        while time.monotonic() < deadline:
            method, _props, _body = channel.basic_get(queue)
            if method is None:
                if deliveries:
                    return deliveries
                time.sleep(0.05)
                continue
            deliveries += 1
            channel.basic_nack(method.delivery_tag, requeue=True)
    raise AssertionError(f"{queue} still delivers after {deliveries} deliveries")


def _take(address: str, token: str, queue: str) -> tuple[pika.BasicProperties, bytes]:
    with connect(address, token) as conn:
        channel = conn.channel()
        deadline = time.monotonic() + 20  # liveness bound: at-least-once dead-lettering is asynchronous
        while time.monotonic() < deadline:
            method, props, body = channel.basic_get(queue, auto_ack=True)
            if method is not None:
                return props, bytes(body)
            time.sleep(0.1)
    raise AssertionError(f"nothing reached {queue}")


async def test_an_event_past_the_delivery_limit_lands_in_the_failed_events_queue(make_mqs: MakeMQS) -> None:
    mqs = make_mqs(mq_delivery_limit=2)
    await mqs.ensure_indexes()
    await mqs.reserve("WF-poison", ["in", "out"], ["in"])
    work, _out, failed = await mqs.activate("WF-poison", 1)
    assert failed.alias == FAILED_EVENTS_ALIAS and failed.is_public and failed.auth_token
    assert [p.alias for p in await mqs.get_public_profiles("WF-poison")] == ["in", FAILED_EVENTS_ALIAS]
    address = str(work.broker_address)
    pika_publish(address, str(work.auth_token), work.mqid, b"poison")

    deliveries = await asyncio.to_thread(_nack_until_gone, address, str(work.auth_token), work.mqid)
    assert deliveries == 3  # the first delivery and two redeliveries
    props, body = await asyncio.to_thread(_take, address, str(failed.auth_token), failed.mqid)
    assert body == b"poison"
    (death,) = props.headers["x-death"]
    assert (death["reason"], death["queue"], death["count"]) == ("delivery_limit", work.mqid, 1)
    await mqs.close()


async def _depths_when(mqs: EmbeddedMQS, workflow_id: str, wanted: dict[str, tuple[int, int, int]]) -> None:
    """Poll until the depths equal ``wanted`` (alias -> ready, unacked, consumers): the broker's statistics are a
    few seconds stale."""
    deadline = time.monotonic() + 30  # liveness bound: several statistics intervals
    while True:
        depths = {d.alias: (d.ready, d.unacknowledged, d.consumers) for d in await mqs.queue_depths(workflow_id)}
        if depths == wanted:
            return
        assert time.monotonic() < deadline, depths
        await asyncio.sleep(0.5)


async def test_queue_depths_count_what_was_published_and_consumed(mqs: EmbeddedMQS) -> None:
    await mqs.reserve("WF-depth", ["in", "out"], ["in"])
    reserved = await mqs.queue_depths("WF-depth")
    assert reserved == [
        QueueDepth(p.mqid, p.alias, None, None, None) for p in await mqs.get_profiles([d.mqid for d in reserved])
    ]
    inq, outq, _failed = await mqs.activate("WF-depth", 1)
    address = str(inq.broker_address)
    for n in range(5):
        pika_publish(address, str(inq.auth_token), inq.mqid, b"event %d" % n)
    pika_publish(address, str(outq.auth_token), outq.mqid, b"result")
    with connect(address, str(inq.auth_token)) as conn:
        channel = conn.channel()
        channel.basic_qos(prefetch_count=2)
        channel.basic_consume(inq.mqid, lambda *_: None)  # a consumer that takes two and never acks
        await _depths_when(mqs, "WF-depth", {"in": (3, 2, 1), "out": (1, 0, 0), FAILED_EVENTS_ALIAS: (0, 0, 0)})
    await _depths_when(mqs, "WF-depth", {"in": (5, 0, 0), "out": (1, 0, 0), FAILED_EVENTS_ALIAS: (0, 0, 0)})

    await mqs.deactivate("WF-depth")
    await mqs.housekeep()
    assert all(d.ready is None for d in await mqs.queue_depths("WF-depth"))  # the vhost is gone
    with pytest.raises(MQSNotFound):
        await mqs.queue_depths("WF-unknown")
