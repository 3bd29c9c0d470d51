"""End to end: the dev stack (nx-27017, private RabbitMQ, WMS, local TMS with real pilots) on fresh ports and a
temp data dir runs the two-task chained example over 200 events, and the seed README's request on `local`; every
result is checked, the workflow is finished, its taskforces end, its queues are deleted from the broker, and no
process is left behind."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from broker_probe import queue_exists

from ewms_client import WMSClient
from ewms_dev.broker_node import BrokerNode
from ewms_dev.devstack import DevStack

pytestmark = pytest.mark.long_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load_example():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("request_workflow", EXAMPLES / "request_workflow.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _processes_using(path: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if path in line and "ps -eo" not in line]


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    # long enough for the stopper to remove the pilots before their queues go (a pilot still waiting for events that
    # sees its vhost deleted first ends Done too: tests/pilot/test_pilot_vhosts.py)
    monkeypatch.setenv("MQ_DELETE_GRACE_SECONDS", "5")
    # the example's tasks run `python3`: this venv's interpreter, not whatever comes first on PATH (a version
    # manager's shim here costs ~0.2 s of CPU per start, 400 starts in the chain test)
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    data_dir = tmp_path_factory.mktemp("stack")
    dev = DevStack(data_dir, max_local_jobs=4)
    dev.up()
    yield dev
    dev.down()
    deadline = time.monotonic() + 20
    while _processes_using(str(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_using(str(data_dir)) == []


async def test_two_task_chain_over_200_events(stack: DevStack) -> None:
    state = stack.state
    assert state is not None
    example = _load_example()
    code = await example.run(state.url, state.user_token, EXAMPLES / "workflow-chain.yaml", 200, 240)
    assert code == 0
    async with WMSClient(state.url, state.user_token) as client:
        workflows = [w async for w in client.query("workflows", {})]
        assert len(workflows) == 1 and workflows[0]["deactivated"] == "FINISHED"
        workflow_id = workflows[0]["workflow_id"]
        taskforces = await client.taskforces_of(workflow_id)
        assert len(taskforces) == 2 and all(example.has_ended(tf) for tf in taskforces)
        assert all(tf["cluster_id"] is not None for tf in taskforces)
        # statuses streamed back: every pilot was seen, and none reported a task error
        assert all(tf["compound_statuses"] for tf in taskforces)
        assert all(not tf["top_task_errors"] for tf in taskforces), [tf["top_task_errors"] for tf in taskforces]
        # the queues are retired: their vhost is deleted from the broker after the (5 s) grace period
        directives = [d async for d in client.query("task-directives", {"workflow_id": workflow_id})]
        mqids = {q for d in directives for q in d["input_queues"] + d["output_queues"]}
        assert len(mqids) == 3
        vhost = (await client.public_queues(workflow_id))[0]["broker_address"].partition("/")[2]
        admin_url = BrokerNode(**state.broker).admin_url
        deadline = time.monotonic() + 60  # liveness bound
        while any(queue_exists(admin_url, q, vhost) for q in mqids):
            assert time.monotonic() < deadline, "queues still on the broker"
            await asyncio.sleep(0.5)
    assert (Path(state.data_dir) / "tms" / "job-event-logs").is_dir()
    # a second `up` on the same data dir brings the same workflows back
    stack.down()
    again = stack.up()
    async with WMSClient(again.url, again.user_token) as client:
        assert (await client.get_workflow(workflow_id))["deactivated"] == "FINISHED"


async def test_seed_readme_request_on_local_with_an_empty_task_image(stack: DevStack) -> None:
    """The seed README's example request, with ``cluster_locations: [local]`` and an empty ``task_image`` (the
    ``process`` runner), run by the example user script as written: accepted, every event copied, no manual step."""
    state = stack.state
    assert state is not None
    example = _load_example()
    code = await example.run(state.url, state.user_token, EXAMPLES / "workflow-seed-readme.json", 20, 240)
    assert code == 0
    async with WMSClient(state.url, state.user_token) as client:
        (workflow,) = [w async for w in client.query("workflows", {})]
        (taskforce,) = await client.taskforces_of(workflow["workflow_id"])
        assert workflow["deactivated"] == "FINISHED" and example.has_ended(taskforce)
        assert taskforce["pilot_config"]["environment"] == {}  # stored as sent; the TMS builds the pilot's
        # (pilots of the 1000 that start after the finished workflow's queues are deleted report that as an error)
