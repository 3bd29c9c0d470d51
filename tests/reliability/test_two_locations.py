"""Several access points at once: one WMS and two TMS processes (locations ``test-alpha`` and ``test-beta``, each its
own ``local`` backend, state dir and job event logs) serve one workflow whose task runs at both. Both taskforces
launch, their real pilots take events from the same queue, each TMS reports statuses to its own taskforce, a
``kill -9`` of one TMS does not disturb the other's taskforce, and both stop once the workflow is finished (the
killed TMS's taskforce when that TMS is back)."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from apiclient import Api
from test_broker_restart import drain, publish

from ewms_dev.factories import task_request, workflow_request
from ewms_dev.processes import alive, until
from wms.auth import Role

SCHEDDS = {"test-alpha": "schedd-alpha.test", "test-beta": "schedd-beta.test"}  # as the test WMS maps them
# each output names the directory the task ran in, which names the taskforce of the pilot that ran it (its taskforce
# dir, or its sandbox when the TMS runs pilots as an unprivileged account)
TASK = """sh -c 'sleep 0.2; printf "%s|%s" "$(cat "$0")" "$PWD" > "$1"' {{INFILE}} {{OUTFILE}}"""
PILOT_ENV = {
    "EWMS_PILOT_MAX_CONCURRENT_TASKS": 1,  # also the prefetch: both pilots get events
    "EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE": 300,
    "EWMS_PILOT_TIMEOUT_QUEUE_INCOMING": 300,  # the pilots run until the workflow is finished
}
ENDED = ("condor-rm", "condor-complete")


def ran_at(outputs: list[str], taskforces: dict[str, dict[str, Any]]) -> Counter[str]:
    """How many outputs each location's taskforce produced."""
    counts: Counter[str] = Counter()
    for output in outputs:
        _, workdir = output.split("|", 1)
        counts.update(where for where, tf in taskforces.items() if tf["taskforce_uuid"] in workdir)
    return counts


async def test_one_workflow_at_two_access_points(api: Api, wms_server, make_token, spawn_tms, tmp_path: Path) -> None:
    task = task_request(tuple(SCHEDDS), task_args=TASK, n_workers=1, task_image=sys.prefix,
                        pilot_config={"environment": PILOT_ENV})  # fmt: skip
    created = await api.ok("POST", "/v0/workflows", workflow_request(tasks=[task]))
    workflow_id = created["workflow"]["workflow_id"]
    uuids = {tf["cluster_location"]: tf["taskforce_uuid"] for tf in created["taskforces"]}
    assert set(uuids) == set(SCHEDDS)
    token = make_token(Role.TMS, "tms")
    tms = {
        where: spawn_tms(wms_server.url, token, TMS_SCHEDD=schedd, TMS_STATE_DIR=str(tmp_path / where))
        for where, schedd in SCHEDDS.items()
    }

    async def taskforces() -> dict[str, dict[str, Any]]:
        return {where: dict(await api.ok("GET", f"/v0/taskforces/{uuid}")) for where, uuid in uuids.items()}

    def awaiting(tfs: dict[str, dict[str, Any]]) -> bool:
        return all("AwaitingFirstMessage" in str(tf["compound_statuses"]) for tf in tfs.values())

    # both launch, each at its own access point, and each pilot reports to its own taskforce
    launched = await until(taskforces, awaiting, 60, "both pilots waiting for events")
    for where, tf in launched.items():
        assert tf["phase"] == "condor-submit" and tf["schedd"] == SCHEDDS[where]
        assert Path(tf["job_event_log_fpath"]).is_relative_to(tmp_path / where)
    pilots = [pid for where in SCHEDDS for pid in _pilot_pids(tmp_path / where)]
    assert len(pilots) == 2

    profiles = (await api.ok("GET", f"/v0/mqs/workflows/{workflow_id}/mq-profiles/public"))["mqprofiles"]
    inq, outq = ({p["alias"]: p for p in profiles}[alias] for alias in ("in", "out"))
    events = [f"event-{i:03d}" for i in range(60)]
    publish(inq, events[:30])
    outputs: list[str] = []

    async def collect() -> int:
        outputs.extend(drain(outq))
        return len(outputs)

    await until(collect, lambda n: n >= 30, 90, "the first 30 outputs")
    both = ran_at(outputs, launched)
    assert set(both) == set(SCHEDDS) and sum(both.values()) == len(outputs), both  # the same queue, both sites

    # kill -9 the alpha TMS: the beta taskforce goes on as before, and events keep flowing
    os.kill(tms["test-alpha"].pid, signal.SIGKILL)
    await until(lambda: tms["test-alpha"].poll(), lambda code: code is not None, 10, "the kill")
    publish(inq, events[30:])
    await until(collect, lambda n: n >= len(events), 90, "every output")
    assert sorted({o.split("|", 1)[0] for o in outputs}) == events
    now = await taskforces()
    assert now["test-beta"]["phase"] == "condor-submit" and now["test-beta"]["compound_statuses"]
    assert tms["test-beta"].poll() is None

    # finished: the beta TMS stops its taskforce; the alpha one waits for its TMS, which stops it when back
    await api.ok("POST", f"/v0/workflows/{workflow_id}/actions/finished", {})
    await until(taskforces, lambda tfs: tfs["test-beta"]["phase"] in ENDED, 60, "the beta taskforce's end")
    assert (await taskforces())["test-alpha"]["phase"] == "pending-stopper"
    restarted = spawn_tms(
        wms_server.url, token, TMS_SCHEDD=SCHEDDS["test-alpha"], TMS_STATE_DIR=str(tmp_path / "test-alpha")
    )
    done = await until(taskforces, lambda tfs: all(tf["phase"] in ENDED for tf in tfs.values()), 60, "both ends")
    assert all(not tf["top_task_errors"] for tf in done.values()), done
    assert restarted.poll() is None and tms["test-beta"].poll() is None
    await until(lambda: [p for p in pilots if alive(p)], lambda left: not left, 30, "every pilot gone")


def _pilot_pids(state_dir: Path) -> list[int]:
    """The process groups of the pilots the local backend recorded (its state file)."""
    state = json.loads((state_dir / "local-backend-jobs.json").read_text())
    return [int(row["pgid"]) for row in state["jobs"] if row.get("pgid")]
