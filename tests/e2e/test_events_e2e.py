"""Issue 15 (points 2 and 4) and issue 16 point 7 end to end: the dev stack (nx-27017, private RabbitMQ, WMS, local
TMS starting real pilots) with the TMS's default pilot waits, failed events and elastic workers as shipped.

One stack serves the module, with two settings shortened so that the suite stays quick (each stated where used):
pilots idle out after ``IDLE`` s instead of 60 s (``TMS_PILOT_DEFAULT_IDLE_TIMEOUT``), and elastic workers look
every second (``ELASTIC_WORKERS_INTERVAL_SECONDS``) instead of every 10 s. Each test finishes its workflow and waits
for its taskforces to end, so the next one finds the four local job slots free.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import mqclient
import pytest

from ewms_client import WMSClient
from ewms_dev.devstack import DevStack, stack_running
from ewms_dev.factories import WORKER_CONFIG
from ewms_dev.processes import until

pytestmark = pytest.mark.long_file

IDLE = 3  # s: the pilots' idle timeout in this module (the shipped default is 60 s)
LIVENESS = 120  # s: generous bound on any one wait below (not a timing claim)
POISON_EVERY = 20  # 1,000 events, 50 poison (5 %)
CHAIN_EVENTS = 1000
CONCURRENCY = {"EWMS_PILOT_MAX_CONCURRENT_TASKS": 2}
SEND_AFTER_IDLE = 2 * IDLE  # s after the pilots ended: the same state as 60 s after with the 60 s default

UPPER_OR_CHOKE = (  # a poison input fails with exit code 3 and a line on stderr
    """sh -c 'if grep -q poison "$0"; then echo "cannot digest $(cat "$0")" >&2; exit 3; fi; """
    """tr a-z A-Z < "$0" > "$1"' {{INFILE}} {{OUTFILE}}"""
)
REVERSE = """sh -c 'rev < "$0" | tr -d "\\n" > "$1"' {{INFILE}} {{OUTFILE}}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    settings = {
        "MQ_DELETE_GRACE_SECONDS": "0",
        "TMS_PILOT_DEFAULT_IDLE_TIMEOUT": str(IDLE),
        "ELASTIC_WORKERS_INTERVAL_SECONDS": "1",
    }
    with stack_running(tmp_path_factory.mktemp("events-stack"), settings, max_local_jobs=4) as dev:
        yield dev


@pytest.fixture
async def client(stack: DevStack) -> Any:
    assert stack.state is not None
    async with WMSClient(stack.state.url, stack.state.user_token) as wms:
        yield wms


def task(inputs: list[str], outputs: list[str], args: str, n_workers: int, **env: Any) -> dict[str, Any]:
    return {
        "cluster_locations": ["local"],
        "input_queue_aliases": inputs,
        "output_queue_aliases": outputs,
        "task_image": "",
        "task_args": args,
        "n_workers": n_workers,
        "worker_config": copy.deepcopy(WORKER_CONFIG),
        "pilot_config": {"environment": env},
    }


def queue(profile: dict[str, Any], timeout: int = LIVENESS) -> mqclient.Queue:
    return mqclient.Queue(
        "rabbitmq", address=profile["broker_address"], name=profile["mqid"], auth_token=profile["auth_token"],
        timeout=timeout,
    )  # fmt: skip


async def send(profile: dict[str, Any], events: list[str]) -> None:
    async with queue(profile).open_pub() as pub:
        for event in events:
            await pub.send(event)


async def receive(profile: dict[str, Any], n: int) -> list[Any]:
    got: list[Any] = []
    async with queue(profile).open_sub() as sub:
        async for data in sub:
            got.append(data)
            if len(got) == n:
                break
    return got


async def public_queues(client: WMSClient, workflow_id: str) -> dict[str, dict[str, Any]]:
    return {p["alias"]: p for p in await client.wait_for_public_queues(workflow_id, LIVENESS)}


async def finish_and_wait(client: WMSClient, workflow_id: str) -> list[dict[str, Any]]:
    await client.finish(workflow_id)
    ended = ("condor-rm", "condor-complete")
    return await until(
        lambda: client.taskforces_of(workflow_id),
        lambda tfs: all(tf["phase"] in ended or (tf["phase"] == "pending-stopper" and tf["cluster_id"] is None)
                        for tf in tfs),
        LIVENESS,
        f"taskforces of {workflow_id} ended",
        interval=0.5,
    )  # fmt: skip


def ewms(stack: DevStack, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The ``ewms`` command as a user runs it, against the stack."""
    assert stack.state is not None
    env = {**os.environ, "EWMS_URL": stack.state.url, "EWMS_TOKEN": stack.state.user_token}
    return subprocess.run(
        [sys.executable, "-m", "wms.cli", *args], env=env, input=stdin, capture_output=True, text=True,
        timeout=LIVENESS,
    )  # fmt: skip


async def test_poison_events_end_in_the_failed_events_queue_and_no_pilot_is_lost(stack, client) -> None:
    request = {
        "public_queue_aliases": ["in", "out"],
        "tasks": [
            task(["in"], ["mid"], UPPER_OR_CHOKE, 2, **CONCURRENCY),
            task(["mid"], ["out"], REVERSE, 2, **CONCURRENCY),
        ],
    }
    workflow_id = (await client.submit_workflow(request))["workflow"]["workflow_id"]
    queues = await public_queues(client, workflow_id)
    events = [f"poison {i}" if i % POISON_EVERY == 0 else f"word {i}" for i in range(CHAIN_EVENTS)]
    reader = asyncio.create_task(receive(queues["out"], CHAIN_EVENTS - CHAIN_EVENTS // POISON_EVERY))
    await send(queues["in"], events)
    results = await reader
    assert sorted(results) == sorted(e.upper()[::-1] for e in events if not e.startswith("poison"))

    n_poison = CHAIN_EVENTS // POISON_EVERY
    read = await asyncio.to_thread(ewms, stack, "receive", workflow_id, "--failed", "-n", str(n_poison), "--timeout",
                                   str(LIVENESS))  # fmt: skip
    assert read.returncode == 0, read.stderr
    failed = [json.loads(line) for line in read.stdout.splitlines()]
    assert sorted(f["data"] for f in failed) == sorted(e for e in events if e.startswith("poison"))
    for event in failed:
        error = event["error"]
        assert error["kind"] == "TaskExitError" and error["exit_code"] == 3
        assert error["stderr_tail"].strip() == f"cannot digest {event['data']}"
        assert error["input_queue"] == queues["in"]["mqid"]

    # the counters are exact once the pilots' last reports are in: sent = done + failed, task by task
    good = CHAIN_EVENTS - n_poison
    expected = {"in": (good, n_poison, 0), "mid": (good, 0, 0)}  # by input queue
    await until(
        lambda: client.workflow_progress(workflow_id),
        lambda p: {t["input_queues"][0]: (t["done"], t["failed"], t["in_flight"]) for t in p["tasks"]} == expected,
        LIVENESS,
        "exact counters",
        interval=0.5,
    )

    # no pilot was lost to the poison: none ended in FatalError (those done have idled out after the last event)
    taskforces = await client.taskforces_of(workflow_id)
    statuses = [tf["compound_statuses"] for tf in taskforces]
    assert all("FatalError" not in by_status for tf_statuses in statuses for by_status in tf_statuses.values())
    assert sum(n for tf_statuses in statuses for by_status in tf_statuses.values() for n in by_status.values()) == 4
    await finish_and_wait(client, workflow_id)


async def test_events_sent_after_the_pilots_went_idle_are_processed_without_add_workers(stack, client) -> None:
    request = {"public_queue_aliases": ["in", "out"], "tasks": [task(["in"], ["out"], REVERSE, 1)]}
    workflow_id = (await client.submit_workflow(request))["workflow"]["workflow_id"]
    queues = await public_queues(client, workflow_id)
    await send(queues["in"], ["abc", "def"])
    assert sorted(await receive(queues["out"], 2)) == ["cba", "fed"]
    (first,) = await until(
        lambda: client.taskforces_of(workflow_id),
        lambda tfs: tfs[0]["phase"] == "condor-complete",
        LIVENESS,
        "the pilot idled out and its taskforce completed",
        interval=0.5,
    )
    assert first["compound_statuses"] == {"COMPLETED": {"Done": 1}}
    await asyncio.sleep(SEND_AFTER_IDLE)

    sent = await asyncio.to_thread(ewms, stack, "send", workflow_id, "in", stdin="ghi\n")
    assert sent.returncode == 0, sent.stderr
    assert "no worker consumes in now" in sent.stderr  # ewms send says so: nothing is live for the task
    assert await receive(queues["out"], 1) == ["ihg"]
    taskforces = await client.taskforces_of(workflow_id)
    assert len(taskforces) == 2  # one added by the elastic workers, none by a user
    assert taskforces[1]["phase_change_log"][0]["source_entity"] == "TMS"
    await finish_and_wait(client, workflow_id)


async def test_the_upstream_example_flow_completes_with_no_manual_step(stack, client) -> None:
    """The seed README's request, at ``local`` with an empty task image; as upstream's request_workflow.py, its
    queue is loaded only after the first 10 s poll of the public queues."""
    request = {
        "public_queue_aliases": ["input-queue", "output-queue"],
        "tasks": [
            {
                "cluster_locations": ["local"],
                "input_queue_aliases": ["input-queue"],
                "output_queue_aliases": ["output-queue"],
                "task_image": "",
                "task_args": "cp {{INFILE}} {{OUTFILE}}",
                "n_workers": 1000,
                "worker_config": copy.deepcopy(WORKER_CONFIG),
            }
        ],
    }
    workflow_id = (await client.submit_workflow(request))["workflow"]["workflow_id"]
    started = time.monotonic()
    await asyncio.sleep(10)  # the example's poll interval
    queues = await public_queues(client, workflow_id)
    assert time.monotonic() - started >= 10
    words = [f"word-{i}" for i in range(20)]
    await send(queues["input-queue"], words)
    assert sorted(await receive(queues["output-queue"], len(words))) == sorted(words)
    taskforces = await finish_and_wait(client, workflow_id)
    assert len(taskforces) == 1  # the request's own taskforce did it: nothing was added
