"""A broker restarted while a workflow is active keeps its queues, their messages and the tokens' validity."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from broker_probe import queue_exists
from mqs_helpers import mqclient_roundtrip, pika_get, pika_publish, vhost_of
from pymongo.asynchronous.database import AsyncDatabase

from ewms_dev import broker_node
from mqs_client import EmbeddedMQS, MQSConfig, TryAgainLater

pytestmark = pytest.mark.long_file


@pytest.fixture
def own_broker() -> Iterator[list[broker_node.BrokerNode]]:
    """A private node of this test's own; the test appends its restarts, and the last one is stopped.

    Its data dir is not under pytest's temp root: any other pytest session starting meanwhile resets that root to
    mode 0700, which locks out the ``rabbitmq`` user that the node runs as.
    """
    data_dir = tempfile.mkdtemp(prefix="ewms-rmq-restart-")
    nodes = [broker_node.start(data_dir, secrets.token_urlsafe(32))]
    yield nodes
    broker_node.stop(nodes[-1])
    shutil.rmtree(data_dir, ignore_errors=True)


async def test_restart_keeps_queues_and_tokens(
    own_broker: list[broker_node.BrokerNode], db: AsyncDatabase[dict[str, Any]]
) -> None:
    (node,) = own_broker
    config = MQSConfig(
        broker_address=node.address,
        broker_management_url=node.management_url,
        broker_token_signing_key=node.signing_key,
    )
    mqs = EmbeddedMQS(db, config)
    await mqs.ensure_indexes()
    await mqs.reserve("WF-restart", ["in", "out"], ["in"])
    inq, outq, failed = await mqs.activate("WF-restart", priority=1)
    assert inq.auth_token and inq.broker_address
    pika_publish(inq.broker_address, inq.auth_token, inq.mqid, b"survives the restart")

    broker_node.stop(node)
    with pytest.raises(TryAgainLater):  # the WMS retries activation while the broker is down
        await mqs.activate("WF-restart", priority=1)
    restarted = broker_node.start(
        node.data_dir, node.signing_key, ports=(node.amqp_port, node.management_port, node.dist_port)
    )
    own_broker.append(restarted)
    assert restarted.address == node.address

    assert all(queue_exists(node.admin_url, q.mqid, vhost_of(inq)) for q in (inq, outq, failed))
    assert pika_get(inq.broker_address, inq.auth_token, inq.mqid) == b"survives the restart"
    assert await mqclient_roundtrip(outq, [{"after": "restart"}]) == [{"after": "restart"}]
    assert await mqs.activate("WF-restart", priority=1) == [inq, outq, failed]
