"""Actions that behave as upstream EWMS's: refused stops are logged, add-workers' phase, priority and source."""

from __future__ import annotations

import time

from apiclient import Api
from factories import workflow_request
from test_workflow_lifecycle import ALPHA, BETA, start_jobs, wait_for_phase

from wms.auth import Role


async def test_finishing_logs_a_refused_stop_on_taskforces_that_already_ended(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    created = await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha", "test-beta")))
    wid = created["workflow"]["workflow_id"]
    ended, live = (t["taskforce_uuid"] for t in created["taskforces"])
    await wait_for_phase(api, [ended, live], "pending-starter")
    tms = api_as(Role.TMS, "tms")
    assert (await start_jobs(tms, ALPHA, 4))["taskforce"]["taskforce_uuid"] == ended
    await tms.ok("POST", f"/v0/tms/condor-complete/taskforces/{ended}", {"condor_complete_ts": time.time()})
    assert (await api.ok("POST", f"/v0/workflows/{wid}/actions/finished"))["n_taskforces"] == 1
    ended_doc = await api.ok("GET", f"/v0/taskforces/{ended}")
    refused = ended_doc["phase_change_log"][-1]
    assert ended_doc["phase"] == "condor-complete"
    assert (refused["target_phase"], refused["was_successful"]) == ("pending-stopper", False)
    assert "already ended" in refused["context"]
    stopped = (await api.ok("GET", f"/v0/taskforces/{live}"))["phase_change_log"][-1]
    assert (stopped["target_phase"], stopped["was_successful"]) == ("pending-stopper", True)


async def test_added_workers_start_before_queue_activation_with_launch_first_priority(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    created = await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha",), priority=30))
    task_id = created["task_directives"][0]["task_id"]
    await wait_for_phase(api, [created["taskforces"][0]["taskforce_uuid"]], "pending-starter")  # queues active
    path = f"/v0/task-directives/{task_id}/actions/add-workers"
    added = await api.ok("POST", path, {"cluster_location": "test-beta", "n_workers": 2})
    assert (added["phase"], added["priority"], added["schedd"]) == ("pre-mq-activation", 130, BETA)
    first = added["phase_change_log"][0]
    assert (first["target_phase"], first["source_entity"]) == ("pre-mq-activation", "USER")
    assert "add workers" in first["context"]
    await wait_for_phase(api, [added["taskforce_uuid"]], "pending-starter")  # advanced by the daemons at once
    by_tms = await api_as(Role.TMS, "tms").ok("POST", path, {"cluster_location": "test-alpha", "n_workers": 1})
    assert by_tms["phase_change_log"][0]["source_entity"] == "TMS" and by_tms["schedd"] == ALPHA
