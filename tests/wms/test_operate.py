"""Labels, taskforce retry and quotas."""

from __future__ import annotations

from apiclient import Api
from factories import workflow_request
from test_workflow_lifecycle import ALPHA, wait_for_phase

from wms.auth import Role


async def test_labels_set_at_creation_edited_and_queried(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    created = await api.ok("POST", "/v0/workflows", workflow_request(labels={"experiment": "icecube", "run": "1"}))
    wid = created["workflow"]["workflow_id"]
    assert created["workflow"]["labels"] == {"experiment": "icecube", "run": "1"}
    other = await api.ok("POST", "/v0/workflows", workflow_request())
    assert other["workflow"]["labels"] == {}
    updated = await api.ok("PATCH", f"/v0/workflows/{wid}", {"labels": {"run": None, "site": "wisc"}})
    assert updated["labels"] == {"experiment": "icecube", "site": "wisc"}
    page = await api.ok("POST", "/v0/query/workflows", {"query": {"labels.experiment": "icecube"}})
    assert [w["workflow_id"] for w in page["workflows"]] == [wid]
    await api.problem("PATCH", f"/v0/workflows/{wid}", {"labels": {"bad.key": "x"}}, status=400)
    await api.problem("PATCH", f"/v0/workflows/{wid}", {"labels": {f"k{i}": "v" for i in range(31)}}, status=400)
    await api_as(Role.USER, "bob").problem("PATCH", f"/v0/workflows/{wid}", {"labels": {"x": "y"}}, status=404)
    assert (await api.ok("GET", f"/v0/workflows/{wid}"))["labels"] == {"experiment": "icecube", "site": "wisc"}


async def test_retry_a_taskforce_whose_submission_gave_up(api: Api, api_as, wms_server) -> None:  # type: ignore[no-untyped-def]
    created = await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha",)))
    old = created["taskforces"][0]["taskforce_uuid"]
    await wait_for_phase(api, [old], "pending-starter")
    await api.problem("POST", f"/v0/taskforces/{old}/actions/retry", status=409)  # nothing failed yet
    tms = api_as(Role.TMS, "tms")
    for _ in range(wms_server.config.tms_action_retries + 1):
        await tms.ok("POST", f"/v0/tms/condor-submit/taskforces/{old}/failed", {"error": "schedd down"})
    new = await api.ok("POST", f"/v0/taskforces/{old}/actions/retry")
    assert new["taskforce_uuid"] != old and new["task_id"] == created["taskforces"][0]["task_id"]
    assert new["schedd"] == ALPHA and f"retry of {old}" in new["phase_change_log"][0]["context"]
    await wait_for_phase(api, [new["taskforce_uuid"]], "pending-starter")
    work = await tms.ok("GET", "/v0/tms/pending-starter/taskforces", params={"schedd": ALPHA})
    assert work["taskforce"]["taskforce_uuid"] == new["taskforce_uuid"]
    old_doc = await api.ok("GET", f"/v0/taskforces/{old}")
    assert old_doc["phase"] == "pending-stopper"
    assert f"retried as {new['taskforce_uuid']}" in old_doc["phase_change_log"][-1]["context"]


async def test_retry_held_and_ended_taskforces_but_not_after_deactivation(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    created = await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha",)))
    uuid = created["taskforces"][0]["taskforce_uuid"]
    await wait_for_phase(api, [uuid], "pending-starter")
    tms = api_as(Role.TMS, "tms")
    body = {"cluster_id": 9, "n_workers": 3, "submit_dict": {}, "job_event_log_fpath": "/l.jel"}
    await tms.ok("POST", f"/v0/tms/condor-submit/taskforces/{uuid}", body)
    held = {"compound_statuses_by_taskforce": {uuid: {"HELD: memory": {"null": 3}}}}
    await tms.ok("POST", "/v0/tms/statuses/taskforces", held)
    new = await api.ok("POST", f"/v0/taskforces/{uuid}/actions/retry")
    assert (await api.ok("GET", f"/v0/taskforces/{uuid}"))["phase"] == "pending-stopper"  # held jobs get removed
    await api.ok("POST", f"/v0/workflows/{created['workflow']['workflow_id']}/actions/abort")
    await api.problem("POST", f"/v0/taskforces/{new['taskforce_uuid']}/actions/retry", status=409)
    await api.problem("POST", f"/v0/taskforces/{uuid}/actions/retry", status=422)
    await api_as(Role.USER, "bob").problem("POST", f"/v0/taskforces/{uuid}/actions/retry", status=404)
    await api.problem("POST", "/v0/taskforces/TF-1-00000000-00000000-00000000/actions/retry", status=404)


async def test_quotas(start_wms, make_token) -> None:  # type: ignore[no-untyped-def]
    server = await start_wms(
        MAX_TASKS_PER_WORKFLOW="1", MAX_WORKERS_PER_TASKFORCE="5", MAX_ACTIVE_WORKFLOWS_PER_USER="2"
    )
    api = Api(server.url, make_token(Role.USER, "frank"))
    two_tasks = workflow_request()
    two_tasks["tasks"].append(dict(two_tasks["tasks"][0]))
    assert "tasks exceed the limit" in (await api.problem("POST", "/v0/workflows", two_tasks, status=422))["detail"]
    many = workflow_request()
    many["tasks"][0]["n_workers"] = 6
    assert "exceeds the limit" in (await api.problem("POST", "/v0/workflows", many, status=422))["detail"]
    first = await api.ok("POST", "/v0/workflows", workflow_request())
    await api.ok("POST", "/v0/workflows", workflow_request())
    response = await api.call("POST", "/v0/workflows", workflow_request())
    assert response.status_code == 429 and response.headers["Retry-After"] == "60"
    assert (
        await Api(server.url, make_token(Role.USER, "grace")).call("POST", "/v0/workflows", workflow_request())
    ).status_code == 200
    await api.ok("POST", f"/v0/workflows/{first['workflow']['workflow_id']}/actions/finished")
    await api.ok("POST", "/v0/workflows", workflow_request())  # room again
    task_id = first["task_directives"][0]["task_id"]
    await api.problem(
        "POST",
        f"/v0/task-directives/{task_id}/actions/add-workers",
        {"cluster_location": "test-alpha", "n_workers": 6},
        status=422,
    )


async def test_task_logs_shipped_by_the_tms_are_served_per_job(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    created = await api.ok("POST", "/v0/workflows", workflow_request())
    uuid = created["taskforces"][0]["taskforce_uuid"]
    assert await api.ok("GET", f"/v0/taskforces/{uuid}/logs") == {"taskforce_uuid": uuid, "jobs": []}
    tms = api_as(Role.TMS, "tms")
    job = {"stdout_tail": "ok\n", "stderr_tail": "", "task_error": "", "exit_code": 0, "ended_ts": 1.0}
    failed = {**job, "job_id": "7.10", "stderr_tail": "Traceback ...\nValueError: bad event", "exit_code": 1}
    failed["task_error"] = "task failed (exit code 1): ValueError: bad event"
    await tms.ok("POST", f"/v0/tms/logs/taskforces/{uuid}", {"jobs": [{**job, "job_id": "7.2"}, failed]})
    await tms.ok("POST", f"/v0/tms/logs/taskforces/{uuid}", {"jobs": [failed]})  # repeated: replaced, not duplicated
    logs = await api.ok("GET", f"/v0/taskforces/{uuid}/logs")
    assert [j["job_id"] for j in logs["jobs"]] == ["7.2", "7.10"]
    assert logs["jobs"][1]["task_error"].endswith("bad event") and logs["jobs"][1]["exit_code"] == 1
    await api_as(Role.USER, "bob").problem("GET", f"/v0/taskforces/{uuid}/logs", status=404)
    too_long = {**job, "job_id": "7.3", "stdout_tail": "x" * 70000}
    await tms.problem("POST", f"/v0/tms/logs/taskforces/{uuid}", {"jobs": [too_long]}, status=400)
    await tms.problem("POST", "/v0/tms/logs/taskforces/TF-1-00000000-00000000-00000000", {"jobs": [failed]}, status=404)
    await api.problem("POST", f"/v0/tms/logs/taskforces/{uuid}", {"jobs": [failed]}, status=403)
