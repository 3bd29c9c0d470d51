"""Queue activation while the broker is down, and a WMS restarted on the same data."""

from __future__ import annotations

import asyncio
import time

from apiclient import Api
from factories import workflow_request
from test_workflow_lifecycle import wait_for_phase

from ewms_dev.processes import free_port


async def test_broker_down_keeps_taskforces_waiting_with_logged_retries_then_recovers(
    start_wms, make_token, broker
) -> None:  # type: ignore[no-untyped-def]
    dead = f"http://guest:guest@127.0.0.1:{free_port()}"
    down = await start_wms(BROKER_MANAGEMENT_URL=dead)
    api = Api(down.url, make_token("user", "dave"))
    created = await api.ok("POST", "/v0/workflows", workflow_request())
    uuid = created["taskforces"][0]["taskforce_uuid"]
    deadline = time.monotonic() + 20
    while True:
        doc = await api.ok("GET", f"/v0/taskforces/{uuid}")
        failures = [e for e in doc["phase_change_log"] if e["target_phase"] == "pre-launch" and not e["was_successful"]]
        if len(failures) >= 2:
            break
        assert time.monotonic() < deadline, doc["phase_change_log"]
        await asyncio.sleep(0.2)
    assert doc["phase"] == "pre-mq-activation"
    assert "queue activation failed (attempt 1" in failures[0]["context"]
    # restart on the same data with the broker reachable: the workflow is carried forward
    await down.wms.stop()
    up = await start_wms(WMS_DB_NAME=down.config.db_name)
    api = Api(up.url, make_token("user", "dave"))
    await wait_for_phase(api, [uuid], "pending-starter")
    assert (await api.ok("GET", f"/v0/workflows/{created['workflow']['workflow_id']}"))["deactivated"] is None


async def test_orphans_of_a_crashed_request_are_reaped(start_wms, make_token) -> None:  # type: ignore[no-untyped-def]
    server = await start_wms(ORPHAN_GRACE_SECONDS="0")
    store = server.wms.store
    # what a request that crashed after writing its children (and before its workflow) leaves behind
    from wms.translation import build_documents, plan_workflow

    plan = plan_workflow(workflow_request(), "erin", server.config)
    _, directives, taskforces = build_documents(plan, {"in": "q1", "out": "q2"})
    await store.task_directives.insert_many(directives)
    await store.taskforces.insert_many(taskforces)
    server.wms.wakeups.mq_activator.set()
    deadline = time.monotonic() + 10
    while await store.taskforces.count_documents({"workflow_id": plan.workflow_id}):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert await store.task_directives.count_documents({"workflow_id": plan.workflow_id}) == 0
