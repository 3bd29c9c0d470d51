"""Issue 14.6, played as a hostile tenant holding workflow A's queue tokens against workflow B and the broker.

Each workflow's queues live in a RabbitMQ vhost of its own: A's tokens open nothing else, A cannot see B's queues
or counts, A's queues are capped in length, bytes and number, and once A is retired its vhost is gone for good.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable

import httpx
import pika
import pika.exceptions
import pytest
from broker_probe import queue_exists
from mqs_helpers import QUORUM, connect, mq_queue, vhost_exists, vhost_of

from ewms_dev.broker_node import BrokerNode
from mqs_client import EmbeddedMQS, MQProfile, MQSError

MakeMQS = Callable[..., EmbeddedMQS]


def _message_count(profile: MQProfile) -> int:
    """Ready messages in the profile's queue, asked by its own token (a passive declare is exact at once)."""
    with connect(str(profile.broker_address), str(profile.auth_token)) as conn:
        return int(conn.channel().queue_declare(profile.mqid, passive=True).method.message_count)


def _publish(profile: MQProfile, queue: str, body: bytes) -> None:
    """Publish through the default exchange of the profile's vhost with the profile's token, confirmed and
    ``mandatory`` (a publish that reaches no queue raises UnroutableError)."""
    with connect(str(profile.broker_address), str(profile.auth_token)) as conn:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.basic_publish("", queue, body, mandatory=True)


def _refused_connection(address: str, token: str) -> str:
    """Open a connection that the broker must refuse; the refusal's text."""
    with pytest.raises(pika.exceptions.AMQPConnectionError) as refused:
        connect(address, token).close()
    return repr(refused.value)


async def _two_tenants(mqs: EmbeddedMQS) -> tuple[list[MQProfile], list[MQProfile]]:
    await mqs.reserve("WF-tenant-A", ["in", "out"], ["in", "out"])
    await mqs.reserve("WF-tenant-B", ["in", "out"], ["in"])
    return await mqs.activate("WF-tenant-A", 1), await mqs.activate("WF-tenant-B", 1)


async def test_a_token_reaches_only_its_own_workflows_queues(mqs: EmbeddedMQS) -> None:
    tenant_a, tenant_b = await _two_tenants(mqs)
    a_in, b_in = tenant_a[0], tenant_b[0]
    assert vhost_of(a_in) != vhost_of(b_in)
    _publish(b_in, b_in.mqid, b"B's own event")

    # A's token in B's vhost: not even a connection, so no publish, consume, declare or passive declare
    for profile in tenant_a:
        text = _refused_connection(str(b_in.broker_address), str(profile.auth_token))
        assert "530" in text and "access to vhost" in text
    # In A's own vhost, B's queue does not exist: a publish to its name is unroutable, a passive declare reveals
    # nothing (404, as for any unknown name), and A may neither create nor read a queue of that name
    with pytest.raises(pika.exceptions.UnroutableError):
        _publish(a_in, b_in.mqid, b"A tries to inject")
    with connect(str(a_in.broker_address), str(a_in.auth_token)) as conn:
        for action, code in (
            (lambda ch: ch.queue_declare(b_in.mqid, passive=True), 404),
            (lambda ch: ch.queue_declare(b_in.mqid, durable=True, arguments=QUORUM), 403),
            (lambda ch: ch.basic_get(b_in.mqid), 403),
            (lambda ch: ch.basic_consume(b_in.mqid, lambda *_: None), 403),
        ):
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
                action(conn.channel())
            assert refused.value.reply_code == code
    assert _message_count(b_in) == 1  # B's queue holds only B's event


async def test_a_retired_workflows_vhost_is_gone_and_old_tokens_recreate_nothing(
    mqs: EmbeddedMQS, broker: BrokerNode
) -> None:
    tenant_a, _tenant_b = await _two_tenants(mqs)
    a_in = tenant_a[0]
    vhost = vhost_of(a_in)
    for n in range(10):
        _publish(a_in, a_in.mqid, b"x" * 1000 + bytes([n]))
    kept = connect(str(a_in.broker_address), str(a_in.auth_token))  # an old connection left open
    await mqs.deactivate("WF-tenant-A")
    await mqs.housekeep()  # no grace in these tests: the vhost is deleted now

    assert not vhost_exists(broker.management_url, vhost)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:  # deleting the vhost closed it (320)
        deadline = time.monotonic() + 10  # liveness bound, not a timing assertion
        while time.monotonic() < deadline:
            kept.process_data_events(time_limit=0.2)
    assert closed.value.reply_code == 320
    for profile in tenant_a:  # the stored tokens are gone; the old ones open nothing, so declare nothing
        assert "not found" in _refused_connection(str(a_in.broker_address), str(profile.auth_token))
    with pytest.raises(Exception, match="not found"):  # oms-mqclient re-declares on open_pub: refused too
        async with mq_queue(a_in).open_pub() as pub:
            await pub.send({"after": "retirement"})
    with pytest.raises(MQSError, match="deactivated"):
        await mqs.activate("WF-tenant-A", 1)
    async with httpx.AsyncClient() as http:  # no queue of A's anywhere on the broker, under any vhost
        everywhere = (await http.get(f"{broker.management_url}/api/queues", params={"columns": "name,vhost"})).json()
    mqids = {p.mqid for p in tenant_a}
    assert not [q for q in everywhere if q["name"] in mqids or q["vhost"] == vhost]
    assert (await mqs.get_public_profiles("WF-tenant-A"))[0].auth_token is None


@pytest.mark.parametrize(("limit", "size"), [({"mq_max_length": 5}, 10), ({"mq_max_length_bytes": 2000}, 500)])
async def test_a_queue_over_its_limit_refuses_publishes(make_mqs: MakeMQS, limit: dict[str, int], size: int) -> None:
    mqs = make_mqs(**limit)
    await mqs.ensure_indexes()
    await mqs.reserve("WF-flood", ["in"], ["in"])
    flood, _failed = await mqs.activate("WF-flood", 1)
    accepted = 0
    with connect(str(flood.broker_address), str(flood.auth_token)) as conn:
        channel = conn.channel()
        channel.confirm_delivery()
        with pytest.raises(pika.exceptions.NackError):
            for _ in range(100):
                channel.basic_publish("", flood.mqid, b"f" * size)
                accepted += 1
    assert 1 <= accepted <= 6  # the broker overshoots a limit by one message, then nacks
    assert _message_count(flood) == accepted
    await mqs.close()


async def test_a_vhost_holds_only_the_workflows_queues(mqs: EmbeddedMQS, broker: BrokerNode) -> None:
    await mqs.reserve("WF-cap", ["in", "out"], ["in"])
    profiles = await mqs.activate("WF-cap", 1)
    vhost = vhost_of(profiles[0])
    assert all(queue_exists(broker.admin_url, p.mqid, vhost) for p in profiles)
    url = urllib.parse.urlsplit(broker.admin_url)._replace(path=f"/{vhost}").geturl()
    with pika.BlockingConnection(pika.URLParameters(url)) as conn:  # even the admin account cannot add one
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="limit"):
            conn.channel().queue_declare("a-queue-too-many", durable=True, arguments=QUORUM)
    with connect(str(profiles[0].broker_address), str(profiles[0].auth_token)) as conn:  # nor the tenant
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            conn.channel().queue_declare("a-queue-too-many", durable=True, arguments=QUORUM)
        assert refused.value.reply_code == 403


async def test_vhost_names_are_never_reused(mqs: EmbeddedMQS) -> None:
    """A workflow id seen again after its records were forgotten gets a new vhost: old tokens are never revived."""
    await mqs.reserve("WF-reuse/%2F", ["in"], [])
    old, _failed = await mqs.activate("WF-reuse/%2F", 1)
    await mqs.deactivate("WF-reuse/%2F")
    await mqs.housekeep()
    assert await mqs.forget("WF-reuse/%2F")
    await mqs.reserve("WF-reuse/%2F", ["in"], [])
    new, _failed = await mqs.activate("WF-reuse/%2F", 1)
    assert vhost_of(old) != vhost_of(new)
    assert "/" not in vhost_of(new) and "%" not in vhost_of(new)  # safe in addresses and token scopes
    assert "not found" in _refused_connection(str(old.broker_address), str(old.auth_token))
    assert _message_count(new) == 0
