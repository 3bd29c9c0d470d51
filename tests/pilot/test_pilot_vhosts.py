"""Per-workflow vhosts: the pilot takes ``host:port/vhost`` addresses as oms-mqclient does, and stays inside them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import mqclient
import pytest
from mqclient.broker_clients.rabbitmq import _parse_url
from pilot_helpers import Broker, last_values, mint_token, queue_env, run_pilot

from ewms_wire.chirp import ChirpAttr
from pilot.config import parse_broker_address

EnvFactory = Callable[..., dict[str, str]]
UPPER = """sh -c 'tr a-z A-Z < "$EWMS_TASK_INFILE" > "$EWMS_TASK_OUTFILE"'"""


@pytest.mark.parametrize(
    "address",
    ["h", "h:5672", "h:5672/", "h:5672/wf-1", "amqp://u:p@h:5672/wf-1", "amqps://h/wf_2", "h:5672//", "user@h/v"],
)
def test_addresses_mean_what_they_mean_to_oms_mqclient(address: str) -> None:
    parts, username, password = _parse_url(address)
    ours = parse_broker_address(address)
    assert ours.host == parts["host"] and ours.port == parts.get("port")
    assert ours.vhost == parts.get("virtual_host", "/")  # an empty vhost is pika's default, "/"
    assert (ours.username, ours.password) == (username or "", password or "")


async def test_a_pilot_and_oms_mqclient_share_a_vhost_address(rmq: Broker, pilot_env: EnvFactory) -> None:
    vhost = rmq.new_vhost()
    qin, qout, qfail = rmq.new_queues(3, vhost)
    address = f"{rmq.address}/{vhost}"
    sender = mqclient.Queue("rabbitmq", address=address, name=qin, auth_token=mint_token(rmq.key, [qin], vhost=vhost))
    async with sender.open_pub() as pub:
        for i in range(4):
            await pub.send(f"event {i}")
    env = pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS=UPPER)
    for direction, queue in (("INCOMING", qin), ("OUTGOING", qout), ("FAILED", qfail)):
        env.update(queue_env(rmq, direction, [queue], vhost=vhost))
    result = await asyncio.to_thread(run_pilot, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"input queue {qin} at amqp://{address}: connected" in result.stderr

    token = mint_token(rmq.key, [qout], vhost=vhost)
    reader = mqclient.Queue("rabbitmq", address=address, name=qout, auth_token=token, timeout=1)
    async with reader.open_sub() as sub:
        received = [message async for message in sub]
    assert sorted(received) == [f"EVENT {i}" for i in range(4)]


def test_a_token_for_another_vhost_is_refused(rmq: Broker, pilot_env: EnvFactory, tmp_path: Path) -> None:
    vhost, other = rmq.new_vhost(), rmq.new_vhost()
    qin, qout = rmq.new_queues(2, vhost)
    env = pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS=UPPER)
    for direction, queue in (("INCOMING", qin), ("OUTGOING", qout)):
        env.update(queue_env(rmq, direction, [queue], vhost=vhost))
        env[f"EWMS_PILOT_QUEUE_{direction}_AUTH_TOKEN"] = mint_token(rmq.key, [queue], vhost=other)
    result = run_pilot(env)
    assert result.returncode == 1
    error = str(last_values(tmp_path / "pilot.jel")[ChirpAttr.ERROR])
    assert error.startswith(f"output queue {qout} at amqp://{rmq.address}/{vhost}: the broker refused the pilot")
