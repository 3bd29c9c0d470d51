"""``ewms status``: the taskforce table, JSON, and ``--watch``."""

from __future__ import annotations

import asyncio
import json

from cli_support import RunCLI, workflow_request

from ewms_client import WMSClient
from ewms_dev.processes import wait_for_phase
from wms.auth import Role


async def test_status_table_summarises_statuses_and_errors(ewms: RunCLI, client: WMSClient, api_as) -> None:
    workflow_id = (await client.submit_workflow(workflow_request()))["workflow"]["workflow_id"]
    await wait_for_phase(lambda: client.taskforces_of(workflow_id), "pending-starter")
    tms = api_as(Role.TMS, "tms-alpha")
    work = await tms.ok("GET", "/v0/tms/pending-starter/taskforces", params={"schedd": "schedd-alpha.test"})
    uuid = work["taskforce"]["taskforce_uuid"]
    submitted = {"cluster_id": 12, "n_workers": 3, "submit_dict": {}, "job_event_log_fpath": "/j.jel"}
    await tms.ok("POST", f"/v0/tms/condor-submit/taskforces/{uuid}", submitted)
    report = {
        "compound_statuses_by_taskforce": {uuid: {"RUNNING": {"Tasking": 3}, "HELD": {"memory": 1}}},
        "top_task_errors_by_taskforce": {uuid: {"minor hiccup": 1, "task failed (exit code 2): boom": 4}},
    }
    await tms.ok("POST", "/v0/tms/statuses/taskforces", report)

    run = await ewms("status", workflow_id)
    assert run.code == 0, run.err
    head, header, *rows = run.out.splitlines()
    assert head.startswith(f"workflow {workflow_id}: active (owner alice, priority 50, created ")
    assert header.split() == ["TASKFORCE", "LOCATION", "PHASE", "WORKERS", "STATUSES", "TOP", "ERROR"]
    by_location = {row.split()[1]: row for row in rows}
    alpha = by_location["test-alpha"]
    assert alpha.startswith(uuid) and " condor-submit " in alpha
    assert alpha.endswith("RUNNING: Tasking=3; HELD: memory=1  task failed (exit code 2): boom (x4)")
    assert by_location["test-beta"].split()[2:] == ["pending-starter", "3", "-", "-"]

    run = await ewms("status", workflow_id, "--json")
    snap = json.loads(run.out)
    assert snap["workflow"]["workflow_id"] == workflow_id and len(snap["taskforces"]) == 2


async def test_watch_refreshes_until_every_taskforce_ended(ewms: RunCLI, client: WMSClient) -> None:
    workflow_id = (await client.submit_workflow(workflow_request()))["workflow"]["workflow_id"]
    watch = asyncio.create_task(ewms("status", workflow_id, "--watch", "0.2", "--timeout", "20"))
    await asyncio.sleep(1)
    await client.finish(workflow_id)
    run = await watch
    assert run.code == 0, run.err
    snapshots = run.out.split(f"workflow {workflow_id}: ")[1:]
    assert len(snapshots) >= 2
    assert snapshots[0].startswith("active") and snapshots[-1].startswith("FINISHED at ")
    assert snapshots[-1].count(" pending-stopper ") == 2 and "[" in snapshots[-1]


async def test_watch_gives_up_after_timeout(ewms: RunCLI, client: WMSClient) -> None:
    workflow_id = (await client.submit_workflow(workflow_request()))["workflow"]["workflow_id"]
    run = await ewms("status", workflow_id, "--watch", "0.1", "--timeout", "0.5", "--json")
    assert run.code == 4 and run.err == "error: not every taskforce ended within 0.5 s\n"
    lines = run.out.splitlines()
    assert len(lines) >= 2 and all(json.loads(line)["workflow"]["workflow_id"] == workflow_id for line in lines)


async def test_unknown_workflow_is_a_404(ewms: RunCLI) -> None:
    run = await ewms("status", "WF-0-deadbeef")
    assert run.code == 1 and run.out == ""
    assert run.err == "error: 404 Not Found: no workflow found with id: WF-0-deadbeef\n"
