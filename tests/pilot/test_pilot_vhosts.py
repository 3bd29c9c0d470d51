"""Per-workflow vhosts: the pilot takes ``host:port/vhost`` addresses as oms-mqclient does, and stays inside them."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import mqclient
import pytest
from mqclient.broker_clients.rabbitmq import _parse_url
from pilot_helpers import Broker, last_values, mint_token, queue_env, run_pilot, start_pilot, statuses

from ewms_wire.chirp import ChirpAttr, PilotStatus
from pilot import queues
from pilot.config import QueueSpec, parse_broker_address

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


def _vhost_env(rmq: Broker, pilot_env: EnvFactory, vhost: str, task: str) -> tuple[dict[str, str], str]:
    qin, qout = rmq.new_queues(2, vhost)
    env = pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS=task, EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE="120")
    for direction, queue in (("INCOMING", qin), ("OUTGOING", qout)):
        env.update(queue_env(rmq, direction, [queue], vhost=vhost))
    return env, qin


def test_a_pilot_whose_queues_are_retired_mid_task_ends_done(
    rmq: Broker, pilot_env: EnvFactory, tmp_path: Path
) -> None:
    vhost = rmq.new_vhost()
    env, qin = _vhost_env(rmq, pilot_env, vhost, "sleep 300")
    rmq.publish(qin, ["a long event"], vhost=vhost)
    pilot = start_pilot(env)
    try:
        deadline = time.monotonic() + 60  # liveness bound
        jel = tmp_path / "pilot.jel"
        while not jel.exists() or PilotStatus.TASKING.value not in statuses(jel):
            assert pilot.poll() is None and time.monotonic() < deadline, "the pilot never started its task"
            time.sleep(0.2)
        rmq.management("DELETE", f"vhosts/{vhost}")  # what the MQS does when the workflow's queues are retired
        _, stderr = pilot.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        pilot.kill()
        raise
    assert pilot.returncode == 0, stderr[-3000:]
    final = last_values(tmp_path / "pilot.jel")
    assert final[ChirpAttr.STATUS] == PilotStatus.DONE.value
    assert ChirpAttr.ERROR not in final  # not a task error: the workflow is over
    assert "its vhost is gone, the queues were retired" in stderr
    assert "unfinished tasks are cancelled" in stderr
    # no reconnection attempt, and no promise of a redelivery the deleted queue cannot make
    assert "gone with its retired queue" in stderr, stderr[-3000:]
    assert "redeliver" not in stderr and "reconnecting" not in stderr, stderr[-3000:]


def test_a_pilot_starting_after_its_queues_were_retired_ends_done(
    rmq: Broker, pilot_env: EnvFactory, tmp_path: Path
) -> None:
    vhost = rmq.new_vhost()
    env, _ = _vhost_env(rmq, pilot_env, vhost, "true")
    rmq.management("DELETE", f"vhosts/{vhost}")
    result = run_pilot(env)
    assert result.returncode == 0, result.stderr[-3000:]
    final = last_values(tmp_path / "pilot.jel")
    assert final[ChirpAttr.STATUS] == PilotStatus.DONE.value and ChirpAttr.ERROR not in final
    assert "nothing to do: output queue" in result.stderr
    assert PilotStatus.AWAITING_FIRST_MESSAGE.value not in statuses(tmp_path / "pilot.jel")


async def test_a_vhost_probe_the_broker_never_answers_hangs_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe (after a close over the vhost) to a broker that accepts but never speaks AMQP answers "timed out" and
    closes its own connection then, not when pika's connection timeouts end it seconds later."""
    hung_up = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass
        hung_up.set()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(queues, "CLOSE_TIMEOUT", 0.3)
    spec = QueueSpec("q", "token", "rabbitmq", parse_broker_address(f"127.0.0.1:{port}/wf-x"))
    link = queues.OutputLink(spec, reconnect_timeout=1, on_fatal=lambda _exc: None)
    async with server:
        assert isinstance(await link._probe(), TimeoutError)
        await asyncio.wait_for(hung_up.wait(), 3)  # liveness bound, well below pika's own timeouts (10 s and more)
