"""RabbitMQ restarts while real pilots (started by a TMS process) process a workflow's events: no event is lost,
every output is delivered (at-least-once: duplicates are counted), and the WMS keeps serving reads meanwhile."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from apiclient import Api
from factories import one_task_workflow

from ewms_dev import broker_node
from ewms_dev.processes import until
from pilot.events_io import Event, decode_event, encode_event
from wms.auth import Role

pytestmark = pytest.mark.long_file

N_BEFORE, N_AFTER = 120, 60  # events sent before the restart, and after it
RESTART_AFTER_OUTPUTS = 20
TASK = """sh -c 'sleep 0.1; cp "$0" "$1"' {{INFILE}} {{OUTFILE}}"""


def user_channel(profile: dict[str, Any]) -> tuple[pika.BlockingConnection, Any]:
    """A channel authenticated with the queue's token, as a user script connects."""
    where, _, vhost = profile["broker_address"].partition("/")  # host:port/vhost, the workflow's own vhost
    host, port = where.rsplit(":", 1)
    credentials = pika.PlainCredentials("", profile["auth_token"])
    params = pika.ConnectionParameters(host, int(port), vhost or "/", credentials=credentials)
    connection = pika.BlockingConnection(params)
    return connection, connection.channel()


def publish(profile: dict[str, Any], events: list[str]) -> None:
    """Send events with publisher confirms (each is on the broker when this returns)."""
    connection, channel = user_channel(profile)
    channel.confirm_delivery()
    for data in events:
        channel.basic_publish("", profile["mqid"], encode_event(Event(data)), pika.BasicProperties(delivery_mode=2))
    connection.close()


def drain(profile: dict[str, Any]) -> list[str]:
    """Take every ready message out of the queue."""
    connection, channel = user_channel(profile)
    out = []
    while True:
        method, _props, body = channel.basic_get(profile["mqid"], auto_ack=True)
        if method is None:
            break
        out.append(decode_event(body).data)
    connection.close()
    return out


def ready(node: broker_node.BrokerNode, profile: dict[str, Any]) -> int:
    """Messages ready in the profile's queue (-1 while the broker or the queue is not available)."""
    vhost = profile["broker_address"].partition("/")[2]
    try:
        connection = pika.BlockingConnection(pika.URLParameters(node.admin_url_in(vhost)))
    except pika.exceptions.AMQPError:
        return -1
    try:
        return int(connection.channel().queue_declare(profile["mqid"], passive=True).method.message_count)
    except pika.exceptions.AMQPError:
        return -1
    finally:
        if connection.is_open:
            connection.close()


async def test_broker_restart_loses_no_event(
    broker_nodes: list[broker_node.BrokerNode], spawn_wms, spawn_tms, make_token, tmp_path: Path, figures
) -> None:
    node = broker_nodes[-1]
    wms = spawn_wms(MQ_DELETE_GRACE_SECONDS="120")  # the outputs are read after the workflow has finished
    user = Api(wms.url, make_token(Role.USER, "alice"))
    spawn_tms(wms.url, make_token(Role.TMS, "tms"))  # the real pilot (python -m pilot)
    request = one_task_workflow(
        TASK,
        2,
        task_image=sys.prefix,  # a local directory: the pilot's process runner
        EWMS_PILOT_MAX_CONCURRENT_TASKS=2,
        EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE=120,
        EWMS_PILOT_TIMEOUT_QUEUE_INCOMING=5,
    )
    created = await user.ok("POST", "/v0/workflows", request)
    workflow_id = created["workflow"]["workflow_id"]
    uuid = created["taskforces"][0]["taskforce_uuid"]

    async def public_profiles() -> list[dict[str, Any]]:
        return list((await user.ok("GET", f"/v0/mqs/workflows/{workflow_id}/mq-profiles/public"))["mqprofiles"])

    profiles = await until(public_profiles, lambda ps: all(p["is_activated"] for p in ps), 30, "activation")
    inq, outq = ({p["alias"]: p for p in profiles}[alias] for alias in ("in", "out"))
    events = [f"event-{i:04d}" for i in range(N_BEFORE + N_AFTER)]
    publish(inq, events[:N_BEFORE])

    async def outputs_ready() -> int:
        return ready(node, outq)

    await until(outputs_ready, lambda n: n >= RESTART_AFTER_OUTPUTS, 40, "first outputs")

    def pilot_logs() -> list[str]:
        return [f.read_text() for f in (tmp_path / "tms").glob(f"job-event-logs/ewms-taskforce-{uuid}/cluster-*/*.err")]

    def consuming(logs: list[str]) -> int:
        connected = f"input queue {inq['mqid']} "
        return sum(any(ln.endswith(": connected") and connected in ln for ln in log.splitlines()) for log in logs)

    # both pilots consume before the restart (on a loaded machine the second may start after the first outputs)
    await until(pilot_logs, lambda logs: consuming(logs) == 2, 60, "both pilots connected")
    before_restart = ready(node, outq)
    broker_node.stop(node)
    down_since = time.monotonic()
    reads: Counter[int] = Counter()
    try:
        # the WMS serves reads while the broker is down
        for path in (f"/v0/workflows/{workflow_id}", f"/v0/taskforces/{uuid}", "/v0/"):
            reads[(await user.call("GET", path)).status_code] += 1
    finally:
        ports = (node.amqp_port, node.management_port, node.dist_port)
        broker_nodes.append(broker_node.start(node.data_dir, node.signing_key, ports=ports))
    down_seconds = time.monotonic() - down_since
    assert reads == {200: 3}, reads
    publish(inq, events[N_BEFORE:])  # the tokens the WMS issued are still valid

    async def progress() -> tuple[int, int]:
        return ready(broker_nodes[-1], inq), ready(broker_nodes[-1], outq)

    await until(progress, lambda p: p[0] == 0 and p[1] >= len(events), 40, "every output")
    await user.ok("POST", f"/v0/workflows/{workflow_id}/actions/finished", {})

    async def taskforce() -> dict[str, Any]:
        return dict(await user.ok("GET", f"/v0/taskforces/{uuid}"))

    done = await until(taskforce, lambda tf: tf["phase"] in ("condor-rm", "condor-complete"), 30, "the end")
    outputs = drain(outq)
    counts = Counter(outputs)
    lost = sorted(set(events) - set(counts))
    assert lost == [], f"{len(lost)} events lost: {lost[:10]}"
    assert set(counts) == set(events)
    duplicates = len(outputs) - len(counts)
    assert not done["top_task_errors"], done["top_task_errors"]
    # both pilots lived through the restart: they lost their connections and reconnected
    stderr = pilot_logs()
    assert len(stderr) == 2 and all("connection lost" in text for text in stderr)
    figures.update(
        faults_injected=1,
        events=len(events),
        outputs=len(outputs),
        outputs_before_restart=before_restart,
        items_lost=len(lost),
        duplicates=duplicates,
        broker_down_seconds=round(down_seconds, 1),
        wms_reads_while_down=sum(reads.values()),
    )
