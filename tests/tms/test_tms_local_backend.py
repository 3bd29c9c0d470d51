"""The local backend with real processes (a stand-in pilot script), its event log read by htcondor2 and the watcher."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import htcondor2
from tms_fakes import FAKE_PILOT, make_pending, make_taskforce

from ewms_dev.processes import alive, until
from tms.backends import local
from tms.backends.base import FoundCluster, JobSpec
from tms.backends.local import LocalBackend
from tms.submit_description import build_job_spec
from tms.watcher.aggregate import compound_statuses, top_task_errors
from tms.watcher.cluster_map import ClusterMap
from tms.watcher.loop import WatchedLog


def make_backend(config: Any, max_concurrent: int = 2) -> LocalBackend:
    return LocalBackend(
        config.job_event_log_dir,
        config.state_dir,
        max_concurrent=max_concurrent,
        pilot_command=FAKE_PILOT,
        monitor_interval=0.2,
        kill_grace=1.0,
    )


def job_spec(config: Any, backend: LocalBackend, uuid: str, mode: str, n: int = 1, **worker: Any) -> JobSpec:
    taskforce = make_taskforce(uuid, n_workers=n)
    taskforce["worker_config"].update(worker)
    pending = make_pending(taskforce)
    pending["task_directive"]["task_args"] = mode  # the stand-in pilot's mode
    spec, _ = build_job_spec(config, pending, backend.job_event_log_path())
    return spec


def events(log: Path) -> list[tuple[int, int, int, Any]]:
    """(type, cluster, proc, detail) of every event, parsed by htcondor2."""
    out = []
    for e in htcondor2.JobEventLog(str(log)).events(0):
        detail = e.get("Info") or e.get("HoldReasonCode") or e.get("ReturnValue", e.get("TerminatedBySignal"))
        out.append((int(e["EventTypeNumber"]), e["Cluster"], e.get("Proc", -1), detail))
    return out


def summary(log: Path, cluster_id: int) -> tuple[dict, dict]:
    watched = WatchedLog(log, ClusterMap(None, "ap.test", log, 0))  # type: ignore[arg-type]
    watched.consume(10_000)
    jobs = list(watched.clusters[cluster_id].jobs.values())
    return compound_statuses(jobs), top_task_errors(jobs, 10)


def count(log: Path, event_type: int, cluster: int) -> int:
    return sum(1 for e in events(log) if e[0] == event_type and e[1] == cluster) if log.exists() else 0


async def test_jobs_run_and_exit(make_config) -> None:
    config = make_config()
    backend = make_backend(config)
    ok = await backend.submit(job_spec(config, backend, "TF-ok", "ok", 2), 2)
    bad = await backend.submit(job_spec(config, backend, "TF-bad", "fail"), 1)
    log = backend.job_event_log_path()
    await until(lambda: count(log, 5, ok.cluster_id) == 2 and count(log, 5, bad.cluster_id) == 1)
    mine = [e for e in events(log) if e[1] == ok.cluster_id and e[2] == 0]
    assert [e[0] for e in mine][:2] == [0, 1] and mine[-1] == (5, ok.cluster_id, 0, 0)
    assert (8, ok.cluster_id, 0, 'HTChirpEWMSPilotStatus: "Done"') in mine
    assert summary(log, ok.cluster_id) == ({"COMPLETED": {"Done": 2}}, {})
    assert summary(log, bad.cluster_id) == (
        {"COMPLETED": {"FatalError": 1}},
        {"task failed (exit code 3): fake failure": 1},
    )
    assert (5, bad.cluster_id, 0, 3) in events(log)
    assert ok.cluster_id != bad.cluster_id
    assert (config.job_event_log_dir / "ewms-taskforce-TF-ok" / f"cluster-{ok.cluster_id}" / "0.out").exists()
    await backend.close()


async def test_concurrency_limit_and_remove(make_config) -> None:
    config = make_config()
    backend = make_backend(config, max_concurrent=1)
    first = await backend.submit(job_spec(config, backend, "TF-a", "sleep", 2), 2)
    log = backend.job_event_log_path()
    await until(lambda: count(log, 8, first.cluster_id) >= 3)  # the running one chirped Started, Tasking, total
    assert backend.n_running == 1 and count(log, 1, first.cluster_id) == 1
    assert await backend.remove(first.cluster_id, "Requested by EWMS") == 2
    await until(lambda: count(log, 9, first.cluster_id) == 2)
    assert summary(log, first.cluster_id)[0] == {"REMOVED": {"Tasking": 1, "null": 1}}
    assert backend.n_running == 0
    await backend.close()


async def test_remove_kills_the_whole_process_group(make_config, tmp_path: Path) -> None:
    config = make_config()
    backend = make_backend(config)
    pid_file = tmp_path / "pids"
    submitted = await backend.submit(job_spec(config, backend, "TF-g", f"pid:{pid_file}"), 1)
    await until(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"))
    pilot_pid, grandchild_pid = map(int, pid_file.read_text().split())
    assert alive(pilot_pid) and alive(grandchild_pid)
    await backend.remove(submitted.cluster_id, "Requested by EWMS")
    await until(lambda: not alive(pilot_pid) and not alive(grandchild_pid))
    await until(lambda: count(backend.job_event_log_path(), 9, submitted.cluster_id) == 1)
    await backend.close()


async def test_over_runtime_is_held_with_code_47(make_config) -> None:
    config = make_config()
    backend = make_backend(config)
    submitted = await backend.submit(job_spec(config, backend, "TF-t", "sleep", max_worker_runtime=2), 1)
    log = backend.job_event_log_path()
    await until(lambda: count(log, 8, submitted.cluster_id) >= 2)
    await until(lambda: count(log, 12, submitted.cluster_id) == 1)
    assert (12, submitted.cluster_id, 0, 47) in events(log)
    assert summary(log, submitted.cluster_id)[0] == {
        "HELD: The job's allowed execution time was exceeded": {"Tasking": 1}
    }
    # held jobs stay in the queue until removed, as in HTCondor
    await backend.remove(submitted.cluster_id, "Requested by EWMS")
    assert summary(log, submitted.cluster_id)[0] == {"REMOVED": {"Tasking": 1}}
    await backend.close()


async def test_over_memory_is_held_with_code_34(make_config) -> None:
    config = make_config()
    backend = make_backend(config)
    submitted = await backend.submit(job_spec(config, backend, "TF-m", "memory", worker_memory="100M"), 1)
    log = backend.job_event_log_path()
    await until(lambda: count(log, 12, submitted.cluster_id) == 1)
    held = [e for e in htcondor2.JobEventLog(str(log)).events(0) if e["EventTypeNumber"] == 12]
    assert held[0]["HoldReasonCode"] == 34 and "memory limit of 100 megabytes" in held[0]["HoldReason"]
    await backend.close()


async def test_close_aborts_every_job_and_ids_survive_restarts(make_config) -> None:
    config = make_config()
    backend = make_backend(config, max_concurrent=1)
    first = await backend.submit(job_spec(config, backend, "TF-c", "sleep", 2), 2)
    await backend.close()
    log = backend.job_event_log_path()
    assert count(log, 9, first.cluster_id) == 2
    again = make_backend(config)
    second = await again.submit(job_spec(config, again, "TF-d", "ok"), 1)
    assert second.cluster_id == first.cluster_id + 1
    # the restarted backend still knows which taskforce each cluster was for
    assert await again.find_cluster("TF-c") == FoundCluster(first.cluster_id, 2, log)
    assert await again.find_cluster("TF-unknown") is None
    await again.close()


async def test_cluster_records_expire(make_config, monkeypatch) -> None:
    config = make_config()
    backend = make_backend(config)
    submitted = await backend.submit(job_spec(config, backend, "TF-x", "ok"), 1)
    assert (await backend.find_cluster("TF-x")).cluster_id == submitted.cluster_id  # type: ignore[union-attr]
    monkeypatch.setattr(local, "CLUSTER_RECORD_SECONDS", -1.0)
    await backend.close()  # saves the state, dropping records older than the retention
    assert await backend.find_cluster("TF-x") is None
    assert await make_backend(config).find_cluster("TF-x") is None


ORPHAN_SCRIPT = """
import asyncio, sys
from pathlib import Path
from tms.backends.local import LocalBackend
from tms.backends.base import JobSpec

async def main():
    jel, state, log = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    backend = LocalBackend(jel, state, pilot_command=tuple(sys.argv[4:]))
    spec = JobSpec("TF-o", {"log": str(log)}, {"EWMS_PILOT_TASK_ARGS": "sleep"}, jel / "ewms-taskforce-TF-o")
    print((await backend.submit(spec, 1)).cluster_id, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_jobs_of_a_crashed_backend_are_cleaned_up(make_config, tmp_path: Path) -> None:
    config = make_config()
    log = config.job_event_log_dir / "orphans.tms.jel"
    crashed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ORPHAN_SCRIPT,
        str(config.job_event_log_dir),
        str(config.state_dir),
        str(log),
        *FAKE_PILOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert crashed.stdout is not None
    cluster_id = int(await crashed.stdout.readline())
    await until(lambda: count(log, 1, cluster_id) == 1)
    jobs = (config.state_dir / "local-backend-jobs.json").read_text()
    crashed.send_signal(signal.SIGKILL)
    await crashed.wait()
    pgid = json.loads(jobs)["jobs"][0]["pgid"]
    assert alive(pgid)  # the pilot outlived its backend
    restarted = make_backend(config)
    assert not alive(pgid) or await _dies(pgid)
    assert list(summary(log, cluster_id)[0]) == ["REMOVED"]
    # its cluster is still known, so the starter confirms it rather than submitting the taskforce again
    assert await restarted.find_cluster("TF-o") == FoundCluster(cluster_id, 1, log)
    await restarted.close()


async def _dies(pid: int) -> bool:
    await until(lambda: not alive(pid), within=5.0)
    return True
