"""``ewms status``: the taskforce table, JSON, and ``--watch``."""

from __future__ import annotations

import asyncio
import json
import re

from cli_support import RunCLI, workflow_request

from ewms_client import WMSClient
from ewms_dev.processes import wait_for_phase
from wms.auth import Role
from wms.cli.commands_status import task_line, task_span


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
    head, task, header, *rows = run.out.splitlines()
    assert head == f"workflow {workflow_id}: active (owner alice, priority 50, created {head.split('created ')[1]}"
    assert f"  [{'.' * 24}]   -%  done 0  failed 0  waiting " in task  # nothing counted yet
    assert re.match(r"TK-\S+ \(in -> out\)  \[", task), task
    assert re.search(r"  in flight 0  0\.00/s  ETA (0 s|-)  running for \d+ s$", task), task  # submitted just now
    assert re.search(r", created \d{4}-\d\d-\d\d \d\d:\d\d:\d\d, \d+ s ago\)$", head), head
    assert header.split() == ["TASKFORCE", "LOCATION", "PHASE", "WORKERS", "HEALTH", "STATUSES", "TOP", "ERROR"]
    by_location = {row.split()[1]: row for row in rows}
    alpha = by_location["test-alpha"]
    assert alpha.startswith(uuid) and " condor-submit " in alpha and " failing " in alpha  # 1 held of 4
    assert alpha.endswith("RUNNING: Tasking=3; HELD: memory=1  task failed (exit code 2): boom (x4)")
    assert by_location["test-beta"].split()[2:] == ["pending-starter", "3", "ok", "-", "-"]
    assert "\x1b[" not in run.out  # not a terminal: no colour

    run = await ewms("status", workflow_id, "--json")
    snap = json.loads(run.out)
    assert snap["workflow"]["workflow_id"] == workflow_id and len(snap["taskforces"]) == 2
    assert snap["progress"]["tasks"][0]["taskforces"][0]["health"] in {"ok", "failing"}


async def test_status_shows_progress_per_task_and_failures_in_red(ewms: RunCLI, client: WMSClient, api_as) -> None:
    workflow_id = (await client.submit_workflow(workflow_request()))["workflow"]["workflow_id"]
    await wait_for_phase(lambda: client.taskforces_of(workflow_id), "pending-starter")
    tms = api_as(Role.TMS, "tms-alpha")
    uuids = []
    for n, schedd in enumerate(("schedd-alpha.test", "schedd-beta.test")):
        work = await tms.ok("GET", "/v0/tms/pending-starter/taskforces", params={"schedd": schedd})
        uuids.append(work["taskforce"]["taskforce_uuid"])
        submitted = {"cluster_id": 20 + n, "n_workers": 3, "submit_dict": {}, "job_event_log_fpath": "/j.jel"}
        await tms.ok("POST", f"/v0/tms/condor-submit/taskforces/{uuids[-1]}", submitted)
    counters = {"done": 30, "failed": 10, "in_flight": 2}
    report = {
        "compound_statuses_by_taskforce": {uuids[0]: {"RUNNING": {"Tasking": 3}}},
        "event_counters_by_taskforce": {uuids[0]: {"done": 0, "failed": 0, "in_flight": 0}},
    }
    await tms.ok("POST", "/v0/tms/statuses/taskforces", report)
    await tms.ok("POST", "/v0/tms/statuses/taskforces", {"event_counters_by_taskforce": {uuids[0]: counters}})

    run = await ewms("status", workflow_id)
    task = run.out.splitlines()[1]
    assert task.startswith("TK-") and "  done 30  failed 10  waiting " in task and "  in flight 2  " in task
    assert "[" + "#" * 17 + "!" * 6 + "." + "]  95%" in task  # 30 done and 10 failed of 42
    assert "/s  ETA " in task and "FAILING" not in task  # (the queue's depth is unknown for its first seconds)

    fatal = {uuid: {"COMPLETED": {"FatalError": 3}} for uuid in uuids}
    await tms.ok("POST", "/v0/tms/statuses/taskforces", {"compound_statuses_by_taskforce": fatal})
    run = await ewms("status", workflow_id, "--color", "always")
    head, task, *_ = run.out.splitlines()
    assert "\x1b[31mFAILED: all 2 taskforces failed: all 3 workers ended in fatal errors" in head
    assert head.endswith("\x1b[0m")
    assert "\x1b[31mfailed 10\x1b[0m" in task and "\x1b[31m!!!!!!\x1b[0m" in task
    assert run.out.count("\x1b[31mfailed\x1b[0m") == 2  # each taskforce's health cell
    plain = await ewms("status", workflow_id, "--color", "never")
    assert "\x1b[" not in plain.out and "FAILED: all 2 taskforces failed" in plain.out.splitlines()[0]


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
    lines = run.out.splitlines()  # as many refreshes as fit in 0.5 s: one on a loaded machine
    assert lines and all(json.loads(line)["workflow"]["workflow_id"] == workflow_id for line in lines)


async def test_unknown_workflow_is_a_404(ewms: RunCLI) -> None:
    run = await ewms("status", "WF-0-deadbeef")
    assert run.code == 1 and run.out == ""
    assert run.err == "error: 404 Not Found: no workflow found with id: WF-0-deadbeef\n"


TASK = {
    "task_id": "TK-1", "name": None, "input_queues": ["in", "side"], "output_queues": ["out"], "done": 4,
    "failed": 0, "in_flight": 0, "waiting": 6, "consumers": 0, "rate": 0.0, "eta_seconds": None, "health": "ok",
    "health_reason": None, "started_ts": None, "ended_ts": None,
}  # fmt: skip


def test_a_task_line_names_the_task_and_its_queues_and_says_how_long_it_ran() -> None:
    assert task_line(TASK, colour=False).startswith("TK-1 (in, side -> out)  [")
    assert task_line(TASK | {"name": "upper"}, colour=False).startswith("TK-1 upper (in, side -> out)  [")
    assert task_span(TASK) == "not started"
    assert task_span(TASK | {"started_ts": 1000.0}, now=1200.0) == "running for 3 min 20 s"
    assert task_span(TASK | {"started_ts": 1000.0, "ended_ts": 1065.0}, now=9999.0) == "ran 1 min 05 s"


def test_a_task_whose_waiting_events_no_worker_reads_says_so() -> None:
    task = TASK
    assert task_line(task, colour=False).endswith("ETA -  not started  NO CONSUMER on in, side")
    assert task_line(task, colour=True).endswith("\x1b[31mNO CONSUMER on in, side\x1b[0m")
    for consumers, waiting in ((1, 6), (0, 0), (None, 6), (0, None)):  # read, nothing waits, or unknown
        assert "CONSUMER" not in task_line(task | {"consumers": consumers, "waiting": waiting}, colour=False)
