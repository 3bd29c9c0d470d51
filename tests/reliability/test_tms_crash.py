"""A TMS killed between submitting a taskforce's jobs and confirming ``condor-submit``: the restarted TMS finds the
cluster it submitted (by taskforce uuid) and confirms it; the taskforce is never submitted twice.

The fault is injected by running the TMS through ``crashing_tms.py``: the process exits with ``os._exit(137)`` (no
cleanup, as after ``kill -9``) right after ``backend.submit`` returned. With the local backend the crashed TMS's
pilots are killed when the backend starts again, so the recovered taskforce ends ``condor-complete`` with its jobs
REMOVED.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import htcondor2
from apiclient import Api
from factories import one_task_workflow

from ewms_dev.processes import alive, until
from wms.auth import Role

FAKE_PILOT = Path(__file__).resolve().parents[1] / "tms" / "data" / "fake_pilot.py"
CRASHING_TMS = Path(__file__).resolve().with_name("crashing_tms.py")


async def test_crash_after_submit_is_confirmed_with_the_first_cluster(
    api: Api, wms_server, make_token, spawn_tms, tmp_path: Path, figures
) -> None:
    created = await api.ok("POST", "/v0/workflows", one_task_workflow("sleep", 2))
    uuid = created["taskforces"][0]["taskforce_uuid"]

    async def taskforce() -> dict:
        return dict(await api.ok("GET", f"/v0/taskforces/{uuid}"))

    await until(taskforce, lambda tf: tf["phase"] == "pending-starter", 20, "pending-starter")
    token = make_token(Role.TMS, "tms")
    pilot = f"{sys.executable} {FAKE_PILOT}"

    crashed = spawn_tms(wms_server.url, token, entry=(str(CRASHING_TMS),), TMS_LOCAL_PILOT_COMMAND=pilot)
    # (polled: the WMS runs in this event loop)
    assert await until(crashed.poll, lambda code: code is not None, 30, "the crash") == 137
    state_file = tmp_path / "tms" / "local-backend-jobs.json"
    state = json.loads(state_file.read_text())
    assert [(c["cluster"], c["taskforce_uuid"], c["n_jobs"]) for c in state["clusters"]] == [(1, uuid, 2)]
    orphans = [row["pgid"] for row in state["jobs"] if row["pgid"]]
    assert (await taskforce())["cluster_id"] is None  # never confirmed

    spawn_tms(wms_server.url, token, TMS_LOCAL_PILOT_COMMAND=pilot)
    # the crashed TMS's pilots were killed by the restarted local backend: the watcher ends the taskforce
    done = await until(taskforce, lambda tf: tf["phase"] == "condor-complete", 20, "condor-complete")
    assert (done["cluster_id"], done["n_workers"]) == (1, 2)
    steps = [(e["target_phase"], e["was_successful"]) for e in done["phase_change_log"]]
    assert steps.count(("condor-submit", True)) == 1 and ("condor-submit", False) not in steps
    assert list(done["compound_statuses"]) == ["REMOVED"]
    assert not any(alive(pgid) for pgid in orphans)

    # exactly one cluster, ever: one id drawn, one cluster record, one cluster in the job event log
    assert (tmp_path / "tms" / "local-backend-last-cluster-id").read_text().strip() == "1"
    state = json.loads(state_file.read_text())
    assert [c["cluster"] for c in state["clusters"] if c["taskforce_uuid"] == uuid] == [1]
    log = Path(done["job_event_log_fpath"])
    submitted = {(e.cluster, e.proc) for e in htcondor2.JobEventLog(str(log)).events(0) if e.type == 0}
    assert submitted == {(1, 0), (1, 1)}
    assert "found unconfirmed cluster 1" in (tmp_path / "tms-1.log").read_text()
    figures.update(faults_injected=1, taskforces=1, clusters_submitted=len({c for c, _ in submitted}))
