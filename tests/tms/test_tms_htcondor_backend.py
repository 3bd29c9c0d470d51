"""The htcondor backend through its interface, with a recording double standing in for the schedd only."""

from __future__ import annotations

import htcondor2
import pytest
from tms_fakes import RecordingSchedd, make_pending, make_taskforce

from tms.backends.base import BackendError, FoundCluster
from tms.backends.htcondor import HTCondorBackend
from tms.submit_description import build_job_spec


async def test_submit_passes_a_real_submit_object(make_config) -> None:
    config = make_config(backend="htcondor")
    schedd = RecordingSchedd(first_cluster=4242)
    backend = HTCondorBackend(config.job_event_log_dir, schedd)
    spec, n = build_job_spec(config, make_pending(make_taskforce("TF-H", n_workers=3)), backend.job_event_log_path())
    submitted = await backend.submit(spec, n)
    assert (submitted.cluster_id, submitted.n_jobs) == (4242, 3)
    description, count = schedd.submits[0]
    assert isinstance(description, htcondor2.Submit) and count == 3
    assert description["MY.EWMSTaskforceUUID"] == '"TF-H"'
    assert description["log"] == str(backend.job_event_log_path())
    assert backend.job_event_log_path().name.endswith(".tms.jel")


async def test_remove_is_condor_rm_of_the_cluster(make_config) -> None:
    schedd = RecordingSchedd()
    backend = HTCondorBackend(make_config().job_event_log_dir, schedd)
    assert await backend.remove(77, "Requested by EWMS") == 3
    assert schedd.actions == [(htcondor2.JobAction.Remove, "ClusterId == 77", "Requested by EWMS")]


async def test_find_cluster_queries_the_taskforce_attribute(make_config) -> None:
    config = make_config(backend="htcondor")
    schedd = RecordingSchedd(first_cluster=70)
    backend = HTCondorBackend(config.job_event_log_dir, schedd)
    log = backend.job_event_log_path()
    for uuid, n in (("TF-other", 1), ("TF-mine", 3)):
        spec, _ = build_job_spec(config, make_pending(make_taskforce(uuid, n_workers=n)), log)
        await backend.submit(spec, n)
    assert await backend.find_cluster("TF-mine") == FoundCluster(cluster_id=71, n_jobs=3, job_event_log=log)
    assert await backend.find_cluster("TF-none") is None
    assert schedd.queries[0] == ('EWMSTaskforceUUID == "TF-mine"', ["ClusterId", "ProcId", "UserLog"])
    assert schedd.history_queries[0] == ('EWMSTaskforceUUID == "TF-mine"', ["ClusterId", "ProcId", "UserLog"], -1)
    # a job that already left the queue does not hide how many were submitted
    schedd.history_ads.append(schedd.job_ads.pop())
    assert (await backend.find_cluster("TF-mine")).n_jobs == 3  # type: ignore[union-attr]


async def test_find_cluster_sees_a_cluster_that_left_the_queue(make_config) -> None:
    """Crash recovery: a cluster submitted before a restart and completed meanwhile is in the history only."""
    config = make_config(backend="htcondor")
    schedd = RecordingSchedd(first_cluster=300)
    crashed = HTCondorBackend(config.job_event_log_dir, schedd)
    log = crashed.job_event_log_path()
    spec, n = build_job_spec(config, make_pending(make_taskforce("TF-done", n_workers=2)), log)
    await crashed.submit(spec, n)
    schedd.leave_queue(300)
    assert schedd.job_ads == []
    restarted = HTCondorBackend(config.job_event_log_dir, schedd)
    assert await restarted.find_cluster("TF-done") == FoundCluster(cluster_id=300, n_jobs=2, job_event_log=log)
    assert [q[0] for q in schedd.history_queries] == ['EWMSTaskforceUUID == "TF-done"']


async def test_schedd_errors_become_backend_errors(make_config) -> None:
    config = make_config()
    schedd = RecordingSchedd(fail_with=htcondor2.HTCondorException("SCHEDD refused: too many jobs"))
    backend = HTCondorBackend(config.job_event_log_dir, schedd)
    spec, n = build_job_spec(config, make_pending(make_taskforce("TF-E")), backend.job_event_log_path())
    with pytest.raises(BackendError, match="too many jobs"):
        await backend.submit(spec, n)
    with pytest.raises(BackendError, match="condor_rm of cluster 5"):
        await backend.remove(5, "x")
    with pytest.raises(BackendError, match="condor_q of taskforce TF-E"):
        await backend.find_cluster("TF-E")


async def test_no_schedd_here_is_a_backend_error(make_config) -> None:
    """htcondor2.Schedd() raises at once on a machine without HTCondor daemons."""
    backend = HTCondorBackend(make_config().job_event_log_dir)
    with pytest.raises(BackendError, match="cannot locate the schedd"):
        await backend.remove(1, "x")
