"""Starter and stopper edge cases against an in-memory WMS (the main story, and a submit that races a finish, run
against the real WMS in test_tms_with_real_wms.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import htcondor2
import pytest
from tms_fakes import FakeWMS, RecordingSchedd, make_taskforce

from ewms_client import WMSError
from tms.backends.base import Backend, BackendError, FoundCluster, JobSpec, Submitted
from tms.backends.htcondor import HTCondorBackend
from tms.starter import Starter
from tms.stopper import Stopper
from tms.wms_client import WMSClient


class ScriptedBackend(Backend):
    """Records calls; answers like a scheduler."""

    name = "scripted"

    def __init__(self, config: Any, fail: str | None = None) -> None:
        super().__init__(config.job_event_log_dir)
        self.fail = fail
        self.submitted: list[tuple[JobSpec, int]] = []
        self.removed: list[tuple[int, str]] = []
        self.existing: dict[str, FoundCluster] = {}  # what find_cluster answers

    async def submit(self, spec: JobSpec, count: int) -> Submitted:
        if self.fail:
            raise BackendError(self.fail)
        self.submitted.append((spec, count))
        return Submitted(cluster_id=300 + len(self.submitted), n_jobs=count)

    async def find_cluster(self, taskforce_uuid: str) -> FoundCluster | None:
        return self.existing.get(taskforce_uuid)

    async def remove(self, cluster_id: int, reason: str) -> int:
        if self.fail:
            raise BackendError(self.fail)
        self.removed.append((cluster_id, reason))
        return 1


async def test_submit_confirm_and_phase_recheck(fake_wms: FakeWMS, make_config) -> None:
    config = make_config(fake_wms.url)
    fake_wms.add(make_taskforce("TF-1", schedd="ap.test", n_workers=3))
    fake_wms.add(make_taskforce("TF-other", schedd="elsewhere"))
    wms = WMSClient.from_config(config)
    backend = ScriptedBackend(config)
    starter = Starter(config, wms, backend, None, asyncio.Event())
    assert await starter.step() is True
    assert not await starter.step()  # nothing else for this schedd
    tf = fake_wms.taskforces["TF-1"]
    assert (tf["phase"], tf["cluster_id"], tf["n_workers"]) == ("condor-submit", 301, 3)
    assert tf["submit_dict"] == backend.submitted[0][0].submit_dict
    assert tf["job_event_log_fpath"] == str(backend.job_event_log_path())
    assert (backend.submitted[0][0].taskforce_dir / "cluster-301").is_dir()
    # a taskforce whose phase changed since it was offered is not started
    fake_wms.add(make_taskforce("TF-2"))
    pending = fake_wms.pending["TF-2"]
    fake_wms.taskforces["TF-2"]["phase"] = "pending-stopper"
    await starter.start(pending)
    assert len(backend.submitted) == 1
    await wms.close()


async def test_unconfirmed_submission_is_confirmed_not_resubmitted(fake_wms: FakeWMS, make_config) -> None:
    config = make_config(fake_wms.url, http_retries=0)
    fake_wms.add(make_taskforce("TF-u"))
    wms = WMSClient.from_config(config)
    backend = ScriptedBackend(config)
    starter = Starter(config, wms, backend, None, asyncio.Event())
    fake_wms.fail_paths.append(("/condor-submit/", 503))
    with pytest.raises(WMSError, match="503"):  # the poll loop logs this and backs off
        await starter.step()
    assert fake_wms.taskforces["TF-u"]["phase"] == "pending-starter"
    assert await starter.step()  # offered again: confirmed with the same cluster, no second submission
    assert len(backend.submitted) == 1
    assert (fake_wms.taskforces["TF-u"]["phase"], fake_wms.taskforces["TF-u"]["cluster_id"]) == ("condor-submit", 301)
    await wms.close()


async def test_cluster_submitted_before_a_crash_is_confirmed_not_resubmitted(fake_wms: FakeWMS, make_config) -> None:
    config = make_config(fake_wms.url)
    fake_wms.add(make_taskforce("TF-c", n_workers=3))
    wms = WMSClient.from_config(config)
    backend = ScriptedBackend(config)
    yesterday = config.job_event_log_dir / "2000-01-01.tms.jel"
    backend.existing["TF-c"] = FoundCluster(cluster_id=41, n_jobs=3, job_event_log=yesterday)
    assert await Starter(config, wms, backend, None, asyncio.Event()).step()
    assert backend.submitted == []
    tf = fake_wms.taskforces["TF-c"]
    assert (tf["phase"], tf["cluster_id"], tf["n_workers"]) == ("condor-submit", 41, 3)
    assert tf["job_event_log_fpath"] == str(yesterday) and tf["submit_dict"]["log"] == str(yesterday)
    await wms.close()


async def test_htcondor_submission_survives_a_lost_confirmation_and_a_restart(fake_wms: FakeWMS, make_config) -> None:
    """The TMS dies after submitting while the WMS is unreachable; the next TMS finds the jobs on the schedd."""
    config = make_config(fake_wms.url, backend="htcondor", http_retries=0)
    fake_wms.add(make_taskforce("TF-r", n_workers=2))
    schedd = RecordingSchedd(first_cluster=900)
    wms = WMSClient.from_config(config)
    fake_wms.fail_paths.append(("/condor-submit/", 503))
    with pytest.raises(WMSError, match="503"):
        await Starter(config, wms, HTCondorBackend(config.job_event_log_dir, schedd), None, asyncio.Event()).step()
    restarted = Starter(config, wms, HTCondorBackend(config.job_event_log_dir, schedd), None, asyncio.Event())
    assert await restarted.step()
    assert len(schedd.submits) == 1
    tf = fake_wms.taskforces["TF-r"]
    assert (tf["phase"], tf["cluster_id"], tf["n_workers"]) == ("condor-submit", 900, 2)
    await wms.close()


async def test_submit_failure_is_reported_and_backed_off(fake_wms: FakeWMS, make_config) -> None:
    config = make_config(fake_wms.url, error_wait=0.3)
    fake_wms.add(make_taskforce("TF-f"))
    wms = WMSClient.from_config(config)
    schedd = RecordingSchedd(fail_with=htcondor2.HTCondorException("no slots for you"))
    starter = Starter(config, wms, HTCondorBackend(config.job_event_log_dir, schedd), None, asyncio.Event())
    loop = asyncio.get_running_loop()
    started = loop.time()
    await starter.step()
    assert loop.time() - started >= 0.3
    log = fake_wms.taskforces["TF-f"]["phase_change_log"]
    assert log[-1]["target_phase"] == "condor-submit" and "no slots for you" in log[-1]["context"]
    await wms.close()


async def test_stopper_removes_and_confirms(fake_wms: FakeWMS, make_config) -> None:
    config = make_config(fake_wms.url)
    fake_wms.add(make_taskforce("TF-s", phase="pending-stopper", cluster_id=55))
    fake_wms.add(make_taskforce("TF-never", phase="pending-stopper", cluster_id=None))
    wms = WMSClient.from_config(config)
    schedd = RecordingSchedd()
    stopper = Stopper(config, wms, HTCondorBackend(config.job_event_log_dir, schedd), asyncio.Event())
    assert await stopper.step()
    assert not await stopper.step()  # a taskforce never submitted has no jobs to remove: not offered
    assert schedd.actions == [(htcondor2.JobAction.Remove, "ClusterId == 55", "Requested by EWMS (taskforce TF-s)")]
    assert fake_wms.taskforces["TF-s"]["phase"] == "condor-rm"
    assert fake_wms.taskforces["TF-never"]["phase"] == "pending-stopper"
    await wms.close()


async def test_stopper_reports_failed_removal(fake_wms: FakeWMS, make_config) -> None:
    config = make_config(fake_wms.url, error_wait=0.1)
    fake_wms.add(make_taskforce("TF-x", phase="pending-stopper", cluster_id=9))
    wms = WMSClient.from_config(config)
    stopper = Stopper(config, wms, ScriptedBackend(config, fail="schedd busy"), asyncio.Event())
    assert await stopper.step()
    tf = fake_wms.taskforces["TF-x"]
    assert tf["phase"] == "pending-stopper"
    assert tf["phase_change_log"][-1] == {
        "target_phase": "condor-rm",
        "was_successful": False,
        "context": "schedd busy",
    }
    assert not await stopper.step()  # the (fake) WMS stops offering it after a failure
    await wms.close()
