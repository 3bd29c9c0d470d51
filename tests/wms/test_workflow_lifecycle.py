"""Integration: a real WMS (wire-protocol MongoDB, embedded MQS on the private RabbitMQ) walked through the
whole lifecycle as a user and as the TMS; every response is checked against Docs/openapi.json."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from apiclient import Api
from factories import SEED_README_REQUEST, workflow_request

from ewms_dev import processes
from wms.auth import Role

ALPHA, BETA = "schedd-alpha.test", "schedd-beta.test"


async def wait_for_phase(api: Api, uuids: list[str], phase: str, within: float = 20.0) -> list[dict[str, Any]]:
    """Poll until every taskforce is in ``phase`` (at most ``within`` seconds)."""
    return await processes.wait_for_phase(
        lambda: asyncio.gather(*(api.ok("GET", f"/v0/taskforces/{u}") for u in uuids)), phase, within
    )


async def submit(api: Api, request: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST a workflow; its response."""
    return await api.ok("POST", "/v0/workflows", request or workflow_request(("test-alpha", "test-beta")))


async def start_jobs(tms: Api, schedd: str, cluster_id: int) -> dict[str, Any]:
    """Act as the TMS: take the next pending-starter taskforce and confirm its submission."""
    work = await tms.ok("GET", "/v0/tms/pending-starter/taskforces", params={"schedd": schedd})
    assert work, "no pending-starter taskforce"
    uuid = work["taskforce"]["taskforce_uuid"]
    body = {
        "cluster_id": cluster_id,
        "n_workers": 3,
        "submit_dict": {"universe": "container"},
        "job_event_log_fpath": "/l.jel",
    }
    await tms.ok("POST", f"/v0/tms/condor-submit/taskforces/{uuid}", body)
    return work


async def test_full_lifecycle(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    created = await submit(api)
    workflow = created["workflow"]
    assert workflow["priority"] == 50 and workflow["deactivated"] is None and workflow["owner"] == "alice"
    uuids = [tf["taskforce_uuid"] for tf in created["taskforces"]]
    assert len(uuids) == 2 and all(tf["phase"] == "pre-mq-activation" for tf in created["taskforces"])

    # daemons: queues activated, taskforces released to the TMS
    await wait_for_phase(api, uuids, "pending-starter")
    profiles = (await api.ok("GET", f"/v0/mqs/workflows/{workflow['workflow_id']}/mq-profiles/public"))["mqprofiles"]
    assert sorted(p["alias"] for p in profiles) == ["@failed-events", "in", "out"]
    assert all(p["is_activated"] and p["auth_token"] and p["broker_address"] for p in profiles)

    tms = api_as(Role.TMS, "tms-alpha")
    work = await start_jobs(tms, ALPHA, cluster_id=101)
    assert work["task_directive"]["task_id"] == created["task_directives"][0]["task_id"]
    assert {p["alias"] for p in work["mqprofiles"]} == {"in", "out", "@failed-events"}  # pilots publish failed events
    alpha_uuid = work["taskforce"]["taskforce_uuid"]
    # repeating the confirmation is harmless; another cluster id is a conflict
    body = {"cluster_id": 101, "n_workers": 3, "submit_dict": {}, "job_event_log_fpath": "/l.jel"}
    await tms.ok("POST", f"/v0/tms/condor-submit/taskforces/{alpha_uuid}", body)
    await tms.problem("POST", f"/v0/tms/condor-submit/taskforces/{alpha_uuid}", {**body, "cluster_id": 7}, status=409)
    assert await tms.ok("GET", "/v0/tms/pending-starter/taskforces", params={"schedd": ALPHA}) == {}

    # statuses, with one unknown uuid -> 207
    report = {
        "compound_statuses_by_taskforce": {alpha_uuid: {"RUNNING": {"Tasking": 2}, "HELD: memory 1.5 GB": {"null": 1}}},
        "top_task_errors_by_taskforce": {alpha_uuid: {"task failed (exit code 1): boom": 4}},
    }
    assert (await tms.ok("POST", "/v0/tms/statuses/taskforces", report))["results"] == [
        {"uuid": alpha_uuid, "status": "updated"}
    ]
    report["compound_statuses_by_taskforce"]["TF-0-00000000-00000000-00000000"] = {"IDLE": {"null": 1}}
    partial = await tms.ok("POST", "/v0/tms/statuses/taskforces", report, status=207)
    assert {r["status"] for r in partial["results"]} == {"updated", "failed"}
    alpha = await api.ok("GET", f"/v0/taskforces/{alpha_uuid}")
    assert alpha["compound_statuses"]["HELD: memory 1.5 GB"] == {"null": 1}
    assert alpha["top_task_errors"] == {"task failed (exit code 1): boom": 4}
    assert alpha["cluster_id"] == 101 and alpha["phase"] == "condor-submit"

    # finished: live taskforces go to pending-stopper; the never-submitted one is not offered to the stopper
    result = await api.ok("POST", f"/v0/workflows/{workflow['workflow_id']}/actions/finished")
    assert result == {"workflow_id": workflow["workflow_id"], "n_taskforces": 2}
    again = await api.ok("POST", f"/v0/workflows/{workflow['workflow_id']}/actions/finished")
    assert again["n_taskforces"] == 0
    await api.problem("POST", f"/v0/workflows/{workflow['workflow_id']}/actions/abort", status=409)
    assert (await api.ok("GET", f"/v0/workflows/{workflow['workflow_id']}"))["deactivated"] == "FINISHED"
    assert await tms.ok("GET", "/v0/tms/pending-stopper/taskforces", params={"schedd": BETA}) == {}
    stopper = await tms.ok("GET", "/v0/tms/pending-stopper/taskforces", params={"schedd": ALPHA})
    assert stopper["taskforce_uuid"] == alpha_uuid

    # condor-rm (with one failure first), then condor-complete; repeats are harmless
    await tms.ok("POST", f"/v0/tms/condor-rm/taskforces/{alpha_uuid}/failed", {"error": "schedd busy"})
    await tms.ok("POST", f"/v0/tms/condor-rm/taskforces/{alpha_uuid}")
    await tms.ok("POST", f"/v0/tms/condor-rm/taskforces/{alpha_uuid}")
    await tms.ok("POST", f"/v0/tms/condor-complete/taskforces/{alpha_uuid}", {"condor_complete_ts": time.time()})
    await tms.ok("POST", f"/v0/tms/condor-complete/taskforces/{alpha_uuid}", {"condor_complete_ts": time.time()})
    final = await api.ok("GET", f"/v0/taskforces/{alpha_uuid}")
    assert final["phase"] == "condor-complete"
    steps = [(e["target_phase"], e["was_successful"]) for e in final["phase_change_log"]]
    assert steps == [
        ("pre-mq-activation", True),
        ("pre-launch", True),
        ("pending-starter", True),
        ("condor-submit", True),
        ("pending-stopper", True),
        ("condor-rm", False),
        ("condor-rm", True),
        ("condor-complete", True),
    ]

    # the queues are retired once the workflow is deactivated
    deadline = time.monotonic() + 15
    while True:
        profiles = (await api.ok("GET", f"/v0/mqs/workflows/{workflow['workflow_id']}/mq-profiles/public"))[
            "mqprofiles"
        ]
        if not any(p["is_activated"] for p in profiles):
            break
        assert time.monotonic() < deadline, profiles
        await asyncio.sleep(0.2)


async def test_abort_before_submission_leaves_nothing_for_the_tms(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    created = await submit(api)
    wid = created["workflow"]["workflow_id"]
    result = await api.ok("POST", f"/v0/workflows/{wid}/actions/abort")
    assert result["n_taskforces"] == 2
    tms = api_as(Role.TMS, "tms")
    await asyncio.sleep(0.5)  # daemons run: nothing may be released after the abort
    for schedd in (ALPHA, BETA):
        assert await tms.ok("GET", "/v0/tms/pending-starter/taskforces", params={"schedd": schedd}) == {}
        assert await tms.ok("GET", "/v0/tms/pending-stopper/taskforces", params={"schedd": schedd}) == {}
    for tf in created["taskforces"]:
        assert (await api.ok("GET", f"/v0/taskforces/{tf['taskforce_uuid']}"))["phase"] == "pending-stopper"


async def test_abort_between_fetch_and_submit_confirmation_gets_the_jobs_removed(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    created = await submit(api, workflow_request(("test-alpha",)))
    uuid = created["taskforces"][0]["taskforce_uuid"]
    await wait_for_phase(api, [uuid], "pending-starter")
    tms = api_as(Role.TMS, "tms")
    work = await tms.ok("GET", "/v0/tms/pending-starter/taskforces", params={"schedd": ALPHA})
    assert work["taskforce"]["taskforce_uuid"] == uuid
    await api.ok("POST", f"/v0/workflows/{created['workflow']['workflow_id']}/actions/abort")
    body = {"cluster_id": 55, "n_workers": 3, "submit_dict": {}, "job_event_log_fpath": "/l.jel"}
    await tms.ok("POST", f"/v0/tms/condor-submit/taskforces/{uuid}", body)  # the late submit is recorded ...
    stopper = await tms.ok("GET", "/v0/tms/pending-stopper/taskforces", params={"schedd": ALPHA})
    assert stopper["taskforce_uuid"] == uuid and stopper["cluster_id"] == 55  # ... so the stopper removes it


async def test_abort_after_submission_and_completion_during_stop(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    created = await submit(api, workflow_request(("test-alpha",)))
    uuid = created["taskforces"][0]["taskforce_uuid"]
    await wait_for_phase(api, [uuid], "pending-starter")
    tms = api_as(Role.TMS, "tms")
    await start_jobs(tms, ALPHA, 77)
    await api.ok("POST", f"/v0/workflows/{created['workflow']['workflow_id']}/actions/abort")
    # the cluster finished by itself before the stopper ran
    await tms.ok("POST", f"/v0/tms/condor-complete/taskforces/{uuid}", {"condor_complete_ts": time.time()})
    assert await tms.ok("GET", "/v0/tms/pending-stopper/taskforces", params={"schedd": ALPHA}) == {}
    await tms.problem("POST", f"/v0/tms/condor-rm/taskforces/{uuid}", status=409)
    assert (await api.ok("GET", f"/v0/taskforces/{uuid}"))["phase"] == "condor-complete"


async def test_failed_submits_are_retried_a_bounded_number_of_times(api: Api, api_as, wms_server) -> None:  # type: ignore[no-untyped-def]
    created = await submit(api, workflow_request(("test-alpha",)))
    uuid = created["taskforces"][0]["taskforce_uuid"]
    await wait_for_phase(api, [uuid], "pending-starter")
    tms = api_as(Role.TMS, "tms")
    for attempt in range(wms_server.config.tms_action_retries + 1):
        work = await tms.ok("GET", "/v0/tms/pending-starter/taskforces", params={"schedd": ALPHA})
        assert work["taskforce"]["taskforce_uuid"] == uuid, attempt
        await tms.ok("POST", f"/v0/tms/condor-submit/taskforces/{uuid}/failed", {"error": f"no schedd ({attempt})"})
    assert await tms.ok("GET", "/v0/tms/pending-starter/taskforces", params={"schedd": ALPHA}) == {}
    doc = await api.ok("GET", f"/v0/taskforces/{uuid}")
    failures = [e for e in doc["phase_change_log"] if e["target_phase"] == "condor-submit"]
    assert len(failures) == 3 and not any(e["was_successful"] for e in failures)
    assert failures[-1]["context"] == "no schedd (2)" and doc["phase"] == "pending-starter"


async def test_add_workers(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    created = await submit(api, workflow_request(("test-alpha",)))
    task_id = created["task_directives"][0]["task_id"]
    await wait_for_phase(api, [created["taskforces"][0]["taskforce_uuid"]], "pending-starter")
    added = await api.ok(
        "POST", f"/v0/task-directives/{task_id}/actions/add-workers", {"cluster_location": "test-beta", "n_workers": 5}
    )
    assert added["schedd"] == BETA and added["n_workers"] == 5 and added["task_id"] == task_id
    assert added["worker_config"] == created["taskforces"][0]["worker_config"]
    await wait_for_phase(api, [added["taskforce_uuid"]], "pending-starter")
    tms_added = await api_as(Role.TMS, "tms").ok(
        "POST", f"/v0/task-directives/{task_id}/actions/add-workers", {"cluster_location": "test-alpha", "n_workers": 1}
    )
    assert tms_added["phase_change_log"][0]["source_entity"] == "TMS"
    await api.problem(
        "POST", f"/v0/task-directives/{task_id}/actions/add-workers", {"cluster_location": "mars", "n_workers": 1}
    )
    await api.ok("POST", f"/v0/workflows/{created['workflow']['workflow_id']}/actions/finished")
    await api.problem(
        "POST",
        f"/v0/task-directives/{task_id}/actions/add-workers",
        {"cluster_location": "test-beta", "n_workers": 1},
        status=422,
    )
    await api.problem(
        "POST",
        "/v0/task-directives/TK-1-00000000-00000000/actions/add-workers",
        {"cluster_location": "test-beta", "n_workers": 1},
        status=404,
    )


async def test_the_seed_readme_request_is_accepted_as_written(start_wms, make_token) -> None:  # type: ignore[no-untyped-def]
    server = await start_wms(EWMS_CLUSTERS='{"sub-2": "sub-2.icecube.wisc.edu"}')
    created = await Api(server.url, make_token(Role.USER, "icecube")).ok("POST", "/v0/workflows", SEED_README_REQUEST)
    taskforce = created["taskforces"][0]
    assert taskforce["schedd"] == "sub-2.icecube.wisc.edu" and taskforce["n_workers"] == 1000
    assert taskforce["worker_config"]["condor_requirements"] == ""
