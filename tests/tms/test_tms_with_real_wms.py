"""The whole TMS (starter, stopper, watcher, file manager) against a real WMS, with the local backend."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from factories import one_task_workflow

from ewms_dev.processes import until
from tms import __main__ as tms_main
from tms.__main__ import run
from tms.backends.base import Backend, JobSpec, Submitted
from tms.backends.htcondor import HTCondorBackend
from tms.config import TMSConfig
from tms.starter import Starter
from tms.wms_client import WMSClient
from wms.auth import Role

SCHEDD = "local-ap.test"  # the schedd of cluster location "local" in the test WMS


@contextlib.asynccontextmanager
async def running_tms(config: TMSConfig) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run(config, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def wait_for(api: Any, uuid: str, check: Callable[[dict], bool], within: float = 20.0) -> dict[str, Any]:
    return await until(lambda: api.ok("GET", f"/v0/taskforces/{uuid}"), check, within, f"taskforce {uuid}")


def files_on_disk(config: TMSConfig, uuid: str, log: str) -> tuple[bool, str]:
    """Whether the job event log is in the log dir, and the taskforce's env file."""
    env_file = config.job_event_log_dir / f"ewms-taskforce-{uuid}" / "ewms_htcondor_envfile.sh"
    return Path(log).parent == config.job_event_log_dir and Path(log).exists(), env_file.read_text()


def tms_config(make_config: Callable[..., TMSConfig], wms_server: Any, make_token: Any, **kw: Any) -> TMSConfig:
    return make_config(
        wms_server.url, schedd=SCHEDD, ewms_token=make_token(Role.TMS, "tms"), watcher_interval=0.25, **kw
    )


async def test_workflow_runs_and_is_stopped(api, wms_server, make_token, make_config) -> None:
    config = tms_config(make_config, wms_server, make_token, local_max_concurrent_jobs=4)
    created = await api.ok("POST", "/v0/workflows", one_task_workflow("sleep", 2))
    uuid = created["taskforces"][0]["taskforce_uuid"]
    async with running_tms(config):
        running = await wait_for(api, uuid, lambda tf: tf["compound_statuses"] == {"RUNNING": {"Tasking": 2}})
        assert running["phase"] == "condor-submit" and running["n_workers"] == 2
        assert running["submit_dict"]["+EWMSTaskforceUUID"] == f'"{uuid}"'
        log_exists, env_text = files_on_disk(config, uuid, running["job_event_log_fpath"])
        assert log_exists and "EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN=" in env_text

        await api.ok("POST", f"/v0/workflows/{created['workflow']['workflow_id']}/actions/finished")
        done = await wait_for(api, uuid, lambda tf: tf["phase"] == "condor-complete")
        assert done["compound_statuses"] == {"REMOVED": {"Tasking": 2}}
        steps = [(e["target_phase"], e["was_successful"]) for e in done["phase_change_log"]]
        assert ("condor-submit", True) in steps and steps[-1] == ("condor-complete", True)
        assert ("pending-stopper", True) in steps


async def test_jobs_that_finish_complete_the_taskforce(api, wms_server, make_token, make_config) -> None:
    config = tms_config(make_config, wms_server, make_token)
    created = await api.ok("POST", "/v0/workflows", one_task_workflow("fail", 2))
    uuid = created["taskforces"][0]["taskforce_uuid"]
    async with running_tms(config):
        done = await wait_for(api, uuid, lambda tf: tf["phase"] == "condor-complete")
    assert done["compound_statuses"] == {"COMPLETED": {"FatalError": 2}}
    assert done["top_task_errors"] == {"task failed (exit code 3): fake failure": 2}
    complete = [e for e in done["phase_change_log"] if e["target_phase"] == "condor-complete"]
    assert complete[0]["source_entity"] == "TMS" and abs(complete[0]["source_event_time"] - time.time()) < 60


async def test_failed_submission_is_reported(api, wms_server, make_token, make_config) -> None:
    """The htcondor backend finds no schedd on this machine: the WMS learns why, and the TMS backs off."""
    config = tms_config(make_config, wms_server, make_token, backend="htcondor", error_wait=0.1)
    created = await api.ok("POST", "/v0/workflows", one_task_workflow("ok", 1))
    uuid = created["taskforces"][0]["taskforce_uuid"]
    await wait_for(api, uuid, lambda tf: tf["phase"] == "pending-starter")
    wms = WMSClient.from_config(config)
    starter = Starter(config, wms, HTCondorBackend(config.job_event_log_dir), None, asyncio.Event())
    assert await starter.step()
    await wms.close()
    taskforce = await api.ok("GET", f"/v0/taskforces/{uuid}")
    failure = taskforce["phase_change_log"][-1]
    assert (failure["target_phase"], failure["was_successful"]) == ("condor-submit", False)
    assert "cannot locate the schedd" in failure["context"]
    assert taskforce["phase"] == "pending-starter"


async def test_real_pilot_reports_through_the_job_event_log(api, wms_server, make_token, make_config) -> None:
    """The real pilot, started by the local backend with the queue variables, chirps into the shared log."""
    config = tms_config(make_config, wms_server, make_token, local_pilot_command=(sys.executable, "-m", "pilot"))
    # the task image, a local directory, selects the pilot's process runner
    request = one_task_workflow(
        "cp {{INFILE}} {{OUTFILE}}", 1, task_image=sys.prefix, EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE=3
    )
    created = await api.ok("POST", "/v0/workflows", request)
    uuid = created["taskforces"][0]["taskforce_uuid"]
    seen: list[dict] = []

    def record(taskforce: dict) -> bool:
        if taskforce["compound_statuses"] and taskforce["compound_statuses"] not in seen:
            seen.append(taskforce["compound_statuses"])
        return bool(taskforce["phase"] == "condor-complete")

    async with running_tms(config):
        done = await wait_for(api, uuid, record, within=40)
    # no message arrived within the wait: the pilot ends Done after waiting for one
    assert done["compound_statuses"] == {"COMPLETED": {"Done": 1}}, seen
    assert {"RUNNING": {"AwaitingFirstMessage": 1}} in seen


async def test_late_submit_is_recorded_and_its_jobs_are_stopped(api, wms_server, make_token, make_config, monkeypatch):  # type: ignore[no-untyped-def]
    """The user finishes the workflow while the TMS submits: the WMS records the late cluster on the stopping
    taskforce, and the TMS's stopper removes those jobs."""
    config = tms_config(make_config, wms_server, make_token, local_max_concurrent_jobs=4)
    created = await api.ok("POST", "/v0/workflows", one_task_workflow("sleep", 2))
    wid, uuid = created["workflow"]["workflow_id"], created["taskforces"][0]["taskforce_uuid"]
    make_backend = tms_main.make_backend

    def finishing_during_submit(tms_config: TMSConfig) -> Backend:
        backend = make_backend(tms_config)
        submit = backend.submit

        async def submit_then_finish(spec: JobSpec, count: int) -> Submitted:
            submitted = await submit(spec, count)
            await api.ok("POST", f"/v0/workflows/{wid}/actions/finished")
            return submitted

        backend.submit = submit_then_finish  # type: ignore[method-assign]
        return backend

    monkeypatch.setattr(tms_main, "make_backend", finishing_during_submit)
    async with running_tms(config):
        done = await wait_for(api, uuid, lambda tf: tf["phase"] == "condor-complete", within=40)
    log = done["phase_change_log"]
    (late,) = [e for e in log if e["target_phase"] == "condor-submit"]
    assert not late["was_successful"] and "submitted after deactivation" in late["context"]
    assert late["source_entity"] == "TMS" and done["cluster_id"] is not None
    steps = [(e["target_phase"], e["was_successful"]) for e in log]
    assert steps.index(("pending-stopper", True)) < steps.index(("condor-submit", False))
    assert ("condor-rm", True) in steps and steps[-1] == ("condor-complete", True)
    assert set(done["compound_statuses"]) == {"REMOVED"}
