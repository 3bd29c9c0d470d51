"""The invariants of ``wms.operations`` under concurrency and after a crash: quota, caps, retry once, labels limit,
no live taskforce under a deactivated workflow."""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from typing import Any

from apiclient import Api
from factories import workflow_request
from pymongo import AsyncMongoClient
from test_workflow_lifecycle import ALPHA, start_jobs, wait_for_phase

from wms.auth import Role
from wms.daemons.launch_control import LaunchControl
from wms.daemons.mq_activator import MQActivator

LIVE = {"pre-mq-activation", "pre-launch", "pending-starter", "condor-submit"}


async def give_up_submitting(tms: Api, uuid: str, retries: int) -> None:
    """Act as a TMS whose submissions of the taskforce fail until it gives up."""
    for attempt in range(retries + 1):
        await tms.ok("POST", f"/v0/tms/condor-submit/taskforces/{uuid}/failed", {"error": f"schedd down ({attempt})"})


async def taskforces_of(api: Api, query: dict[str, Any]) -> list[dict[str, Any]]:
    page = await api.ok("POST", "/v0/query/taskforces", {"query": query, "limit": 1000})
    return list(page["taskforces"])


async def test_concurrent_submits_never_pass_the_active_workflow_quota(start_wms, make_token) -> None:  # type: ignore[no-untyped-def]
    server = await start_wms(MAX_ACTIVE_WORKFLOWS_PER_USER="3", WMS_RUN_DAEMONS="false")
    api = Api(server.url, make_token(Role.USER, "quota-racer"))
    responses = await asyncio.gather(*(api.call("POST", "/v0/workflows", workflow_request()) for _ in range(12)))
    accepted = [r.json()["workflow"]["workflow_id"] for r in responses if r.status_code == 200]
    assert {r.status_code for r in responses} <= {200, 429} and 1 <= len(accepted) <= 3
    page = await api.ok("POST", "/v0/query/workflows", {"query": {"deactivated": None}, "limit": 1000})
    assert sorted(w["workflow_id"] for w in page["workflows"]) == sorted(accepted)
    # a withdrawn request leaves no children behind
    assert {t["workflow_id"] for t in await taskforces_of(api, {})} == set(accepted)


async def test_two_concurrent_retries_make_one_taskforce(api: Api, api_as, wms_server) -> None:  # type: ignore[no-untyped-def]
    created = await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha",)))
    old = created["taskforces"][0]["taskforce_uuid"]
    await wait_for_phase(api, [old], "pending-starter")
    await give_up_submitting(api_as(Role.TMS, "tms"), old, wms_server.config.tms_action_retries)
    responses = await asyncio.gather(*(api.call("POST", f"/v0/taskforces/{old}/actions/retry") for _ in range(4)))
    assert {r.status_code for r in responses} <= {200, 409} and 200 in {r.status_code for r in responses}
    new = {r.json()["taskforce_uuid"] for r in responses if r.status_code == 200}
    assert len(new) == 1
    task = await taskforces_of(api, {"task_id": created["task_directives"][0]["task_id"]})
    assert {t["taskforce_uuid"] for t in task} == {old} | new
    again = await api.problem("POST", f"/v0/taskforces/{old}/actions/retry", status=409)
    assert f"already retried as {new.pop()}" in again["detail"]


async def test_a_taskforce_that_completed_normally_is_not_retried(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    created = await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha",)))
    uuid = created["taskforces"][0]["taskforce_uuid"]
    await wait_for_phase(api, [uuid], "pending-starter")
    tms = api_as(Role.TMS, "tms")
    await start_jobs(tms, ALPHA, 7)
    done = {"compound_statuses_by_taskforce": {uuid: {"COMPLETED": {"Done": 3}}}}
    await tms.ok("POST", "/v0/tms/statuses/taskforces", done)
    await tms.ok("POST", f"/v0/tms/condor-complete/taskforces/{uuid}", {"condor_complete_ts": time.time()})
    problem = await api.problem("POST", f"/v0/taskforces/{uuid}/actions/retry", status=409)
    assert "has not failed" in problem["detail"]


async def test_retries_and_added_taskforces_are_capped_per_task(start_wms, make_token) -> None:  # type: ignore[no-untyped-def]
    server = await start_wms(MAX_RETRIES_PER_TASK="1", MAX_ADDED_TASKFORCES_PER_TASK="2")
    api = Api(server.url, make_token(Role.USER, "capped"))
    tms = Api(server.url, make_token(Role.TMS, "tms"))
    created = await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha",)))
    task_id = created["task_directives"][0]["task_id"]
    first = created["taskforces"][0]["taskforce_uuid"]
    await wait_for_phase(api, [first], "pending-starter")
    await give_up_submitting(tms, first, server.config.tms_action_retries)
    second = (await api.ok("POST", f"/v0/taskforces/{first}/actions/retry"))["taskforce_uuid"]
    await wait_for_phase(api, [second], "pending-starter")
    await give_up_submitting(tms, second, server.config.tms_action_retries)
    problem = await api.problem("POST", f"/v0/taskforces/{second}/actions/retry", status=422)
    assert "retried the most times allowed (1)" in problem["detail"]

    body = {"cluster_location": "test-beta", "n_workers": 1}
    path = f"/v0/task-directives/{task_id}/actions/add-workers"
    responses = await asyncio.gather(*(api.call("POST", path, body) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 422, 422, 422]
    assert len(await taskforces_of(api, {"task_id": task_id})) == 2 + 2


async def test_no_taskforce_stays_live_when_workers_are_added_during_a_finish(api: Api) -> None:
    for _ in range(3):
        created = await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha",)))
        wid, task_id = created["workflow"]["workflow_id"], created["task_directives"][0]["task_id"]
        await wait_for_phase(api, [created["taskforces"][0]["taskforce_uuid"]], "pending-starter")
        path = f"/v0/task-directives/{task_id}/actions/add-workers"
        adds = [api.call("POST", path, {"cluster_location": "test-beta", "n_workers": 1}) for _ in range(6)]
        results = await asyncio.gather(*adds[:3], api.call("POST", f"/v0/workflows/{wid}/actions/finished"), *adds[3:])
        assert {r.status_code for r in results} <= {200, 422}
        await asyncio.sleep(1)  # a few daemon passes
        phases = {t["taskforce_uuid"]: t["phase"] for t in await taskforces_of(api, {"workflow_id": wid})}
        assert not LIVE & set(phases.values()), phases


async def test_launch_control_never_releases_a_taskforce_of_a_deactivated_workflow(start_wms, make_token) -> None:  # type: ignore[no-untyped-def]
    server = await start_wms(WMS_RUN_DAEMONS="false")
    wms = server.wms
    api = Api(server.url, make_token(Role.USER, "alice"))
    created = await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha",)))
    wid, uuid = created["workflow"]["workflow_id"], created["taskforces"][0]["taskforce_uuid"]
    await MQActivator(wms.store, wms.lifecycle, wms.mqs, wms.config, wms.wakeups.launch).one_pass()
    assert (await api.ok("GET", f"/v0/taskforces/{uuid}"))["phase"] == "pre-launch"
    # the flag is written, the deactivation has not yet moved the taskforces
    await wms.store.workflows.update_one({"workflow_id": wid}, {"$set": {"deactivated": "ABORTED"}})
    await LaunchControl(wms.store, wms.lifecycle, wms.config).one_pass()
    doc = await api.ok("GET", f"/v0/taskforces/{uuid}")
    assert doc["phase"] == "pending-stopper"
    assert doc["phase_change_log"][-1]["source_entity"] == "Taskforce Launch Control"


async def test_a_deactivation_cut_by_kill_9_is_completed_on_restart(spawn_wms, make_token, mongo_uri) -> None:  # type: ignore[no-untyped-def]
    db_name = f"wms_{secrets.token_hex(4)}"
    first = spawn_wms(WMS_DB_NAME=db_name)
    api = Api(first.url, make_token(Role.USER, "alice"), validate=False)
    created = await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha", "test-beta")))
    wid = created["workflow"]["workflow_id"]
    uuids = [t["taskforce_uuid"] for t in created["taskforces"]]
    await wait_for_phase(api, uuids, "pending-starter")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    # what a finish request killed between its two writes leaves: the flag set, the taskforces not moved
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    await client[db_name]["workflows"].update_one(
        {"workflow_id": wid}, {"$set": {"deactivated": "FINISHED", "deactivated_ts": time.time()}}
    )
    await client.close()
    second = spawn_wms(WMS_DB_NAME=db_name)
    docs = await wait_for_phase(Api(second.url, api.token, validate=False), uuids, "pending-stopper")
    assert all(d["phase_change_log"][-1]["source_entity"] == "Workflow MQ Activator" for d in docs)


async def test_concurrent_label_edits_are_all_kept_and_never_pass_the_limit(api: Api) -> None:
    created = await api.ok("POST", "/v0/workflows", workflow_request(labels={f"base{i}": "x" for i in range(20)}))
    path = f"/v0/workflows/{created['workflow']['workflow_id']}"
    edits = [api.call("PATCH", path, {"labels": {f"k{i}": str(i)}}) for i in range(10)]
    assert {r.status_code for r in await asyncio.gather(*edits)} == {200}
    assert len((await api.ok("GET", path))["labels"]) == 30
    pairs = [api.call("PATCH", path, {"labels": {f"p{i}a": "1", f"p{i}b": "2"}}) for i in range(2)]
    assert sorted(r.status_code for r in await asyncio.gather(*pairs)) == [200, 400]
    assert len((await api.ok("GET", path))["labels"]) == 32
