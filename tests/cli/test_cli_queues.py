"""``ewms queues``, ``send`` and ``receive`` with the real private broker."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import pika
import pytest
from cli_support import RunCLI, workflow_request
from mqclient.broker_client_interface import Message

from ewms_client import WMSClient
from ewms_dev.processes import free_port, until
from wms.cli.exits import CLIError, Exit
from wms.cli.mq import broker_errors, open_queue


def publish(profile: dict[str, Any], body: bytes) -> None:
    """Publish a raw envelope to the profile's queue (``host:port/vhost`` address, the token as password)."""
    where, _, vhost = profile["broker_address"].partition("/")
    host, port = where.rsplit(":", 1)
    credentials = pika.PlainCredentials("", profile["auth_token"])
    with pika.BlockingConnection(pika.ConnectionParameters(host, int(port), vhost, credentials)) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", profile["mqid"], body)


async def submit(client: WMSClient) -> str:
    """A workflow whose task reads the public queue ``in`` and writes ``out``; its id."""
    workflow_id: str = (await client.submit_workflow(workflow_request()))["workflow"]["workflow_id"]
    return workflow_id


async def test_queues_table_hides_tokens_unless_asked(ewms: RunCLI, client: WMSClient) -> None:
    workflow_id = await submit(client)
    run = await ewms("queues", workflow_id, "--wait", "20")
    assert run.code == 0, run.err
    header, *rows = run.out.splitlines()
    assert header.split() == ["ALIAS", "MQID", "ADDRESS", "ACTIVATED"]
    profiles = {p["alias"]: p for p in await client.public_queues(workflow_id)}
    assert sorted(rows) == sorted(
        f"{a:{max(map(len, profiles))}}  {p['mqid']}  {p['broker_address']}  yes" for a, p in profiles.items()
    )

    run = await ewms("queues", workflow_id, "--json")
    assert {p["alias"]: p["auth_token"] for p in json.loads(run.out)} == dict.fromkeys(profiles, "***")
    run = await ewms("queues", workflow_id, "--json", "--show-token")
    assert {p["alias"]: p["auth_token"] for p in json.loads(run.out)} == {
        a: p["auth_token"] for a, p in profiles.items()
    }
    run = await ewms("queues", workflow_id, "--show-token")
    assert run.out.splitlines()[0].split()[-1] == "TOKEN" and profiles["in"]["auth_token"] in run.out


async def test_send_then_receive_from_the_same_public_queue(ewms: RunCLI, client: WMSClient) -> None:
    workflow_id = await submit(client)
    run = await ewms("send", workflow_id, "in", stdin="alpha\nbeta two\n\ngamma\n")
    assert run.code == 0, run.err
    assert run.err.startswith("sent 3 event(s) to in (")
    run = await ewms("send", workflow_id, "in", "--json", stdin='{"n": 1}\n[1, 2]\n"quoted"\n')
    assert run.code == 0 and run.err.startswith("sent 3 event(s)"), run.err

    run = await ewms("receive", workflow_id, "in", "-n", "5", "--timeout", "10")
    assert run.code == 0, run.err
    assert run.out.splitlines() == ["alpha", "beta two", "gamma", '{"n": 1}', "[1, 2]"]
    run = await ewms("receive", workflow_id, "in", "--json", "--timeout", "1")
    assert run.code == 0 and run.out == '"quoted"\n', run.err
    assert run.err == "no event for 1 s: received 1\n"

    run = await ewms("receive", workflow_id, "out", "-n", "1", "--timeout", "1")
    assert run.code == 4 and run.out == ""
    assert run.err == "error: no event for 1 s: received 0 of 1\n"


async def test_queue_errors(ewms: RunCLI, client: WMSClient) -> None:
    workflow_id = await submit(client)
    run = await ewms("send", workflow_id, "nope", stdin="x\n")
    assert run.code == 1
    assert run.err == f"error: workflow {workflow_id} has no public queue 'nope' (public: @failed-events, in, out)\n"
    run = await ewms("receive", workflow_id, "ot", "-n", "1")
    assert run.code == 1
    assert run.err.endswith("(public: @failed-events, in, out); did you mean 'out'?\n")
    run = await ewms("send", workflow_id, "in", "--json", stdin='{"ok": 1}\n{bad\n')
    assert run.code == 2 and "stdin line 2 is not valid JSON" in run.err and "1 event(s) were sent" in run.err
    run = await ewms("receive", "WF-0-deadbeef", "in")
    assert run.code == 1 and run.err.startswith("error: 404 Not Found: ")


async def test_unreachable_broker_is_unavailable() -> None:
    profile = {
        "alias": "in",
        "mqid": "q1",
        "broker_type": "rabbitmq",
        "broker_address": f"127.0.0.1:{free_port()}",
        "auth_token": "t",
    }
    with pytest.raises(CLIError) as info, broker_errors(profile):
        async with open_queue(profile, 1).open_pub() as pub:
            await pub.send("x")
    assert info.value.code == Exit.UNAVAILABLE
    assert str(info.value).startswith(f"broker error on queue 'in' (q1) at {profile['broker_address']}: ")


async def test_ctrl_c_stops_a_blocked_receive_at_once(wms_server, token: str, client: WMSClient) -> None:
    workflow_id = await submit(client)
    await client.wait_for_public_queues(workflow_id, timeout=20)
    ewms = Path(sys.executable).with_name("ewms")
    argv = ["--url", wms_server.url, "--token", token, "receive", workflow_id, "in", "--timeout", "60"]
    proc = await asyncio.create_subprocess_exec(ewms, *argv, stdout=PIPE, stderr=PIPE)

    async def consuming() -> bool:  # connected and waiting inside the (blocking) broker client
        depths = await wms_server.wms.mqs.queue_depths(workflow_id)
        return any(d.alias == "in" and d.consumers for d in depths)

    # liveness bound: the broker's statistics lag a few seconds; a loaded machine starts the CLI slowly
    await until(consuming, within=90, what="the receive consuming from `in`", interval=0.5)
    assert proc.returncode is None
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=5)
    assert proc.returncode == 130 and out == b"" and err == b"error: interrupted\n"


async def test_send_says_who_consumes_and_receive_failed_prints_errors(ewms: RunCLI, client: WMSClient) -> None:
    workflow_id = await submit(client)
    run = await ewms("send", workflow_id, "in", stdin="x\n")
    assert run.code == 0 and "in is read by task TK-" in run.err and "(live taskforces)" in run.err, run.err
    run = await ewms("send", workflow_id, "out", stdin="x\n")
    assert run.code == 0 and f"no task of {workflow_id} reads out" in run.err, run.err

    failed = next(p for p in await client.public_queues(workflow_id) if p["alias"] == "@failed-events")
    error = {"error": "task failed (exit code 3): bad", "exit_code": 3, "stderr_tail": "bad", "input_queue": "q"}
    body = Message.serialize("the input", headers={"ewms-failed": error})  # as a pilot publishes a failed event
    await asyncio.to_thread(publish, failed, body)
    run = await ewms("receive", workflow_id, "--failed", "-n", "1", "--timeout", "10")
    assert run.code == 0, run.err
    assert json.loads(run.out) == {"data": "the input", "error": error}

    for args in ((workflow_id, "in", "--failed"), (workflow_id,)):
        run = await ewms("receive", *args)
        assert run.code == 2 and "give a queue ALIAS or --failed" in run.err
