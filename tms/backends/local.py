"""A scheduler on this machine: each job is a pilot process, recorded in a real HTCondor-format job event log.

The backend writes the events a schedd would (submit, execute, terminated, aborted on removal, held when a job
exceeds its ``allowed_execute_duration`` or ``request_memory``); the pilot itself adds its status chirps as generic
events. So the watcher reads these logs exactly as it reads HTCondor's. Each job runs in its own process group so
that removing or holding it also stops the tasks it started. Cluster ids come from a counter file in the state
dir, so they stay unique across restarts.

Crash recovery: the state file lists the unfinished jobs and the clusters submitted in the last
``CLUSTER_RECORD_SECONDS`` with their taskforce. Jobs left behind by a crashed TMS are killed and recorded as
aborted when the backend starts again (their pilots' environment and queue tokens are not kept); the cluster
records stay, so :meth:`LocalBackend.find_cluster` still names the cluster of a taskforce whose submission the
crashed TMS never confirmed, and the starter confirms that cluster instead of submitting a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ewms_wire.job_event_log import JobEventLogWriter
from tms.backends.base import Backend, BackendError, FoundCluster, JobSpec, Submitted
from tms.files import atomic_write_text

LOGGER = logging.getLogger(__name__)

HOLD_CODE_JOB_OUT_OF_RESOURCES = 34  # CONDOR_HOLD_CODE::JobOutOfResources (memory over the limit)
HOLD_CODE_JOB_EXECUTE_EXCEEDED = 47  # CONDOR_HOLD_CODE::JobExecuteExceeded (allowed_execute_duration)
CLUSTER_RECORD_SECONDS = 7 * 86400  # how long find_cluster remembers a submitted cluster
PASSED_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
)
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class JobPhase(enum.Enum):
    """Where a local job is."""

    QUEUED = "queued"
    RUNNING = "running"
    HELD = "held"


@dataclass
class LocalJob:
    """One pilot job."""

    cluster: int
    proc: int
    spec: JobSpec
    phase: JobPhase = JobPhase.QUEUED
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    peak_rss_mb: int = 0
    stop_reason: tuple[str, str, int] | None = None  # ("remove"|"hold", reason, hold code)
    waiter: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def max_runtime(self) -> float | None:
        return _positive_number(self.spec.submit_dict.get("allowed_execute_duration"))

    @property
    def memory_limit_mb(self) -> float | None:
        return _positive_number(self.spec.submit_dict.get("request_memory"))


@dataclass(frozen=True)
class ClusterRecord:
    """Which taskforce a cluster was submitted for (persisted in the state file)."""

    taskforce_uuid: str
    n_jobs: int
    log: str
    submitted: float


class ClusterIdCounter:
    """Cluster ids unique per state dir, persisted so that a restart never reuses one."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def next(self) -> int:
        """Reserve and return the next id."""
        try:
            last = int(self.path.read_text().strip() or 0)
        except FileNotFoundError:
            last = 0
        atomic_write_text(self.path, f"{last + 1}\n")
        return last + 1


class LocalBackend(Backend):
    """Runs pilots as processes on this machine, at most ``max_concurrent`` at once."""

    name = "local"

    def __init__(
        self,
        job_event_log_dir: Path,
        state_dir: Path,
        max_concurrent: int = 2,
        pilot_command: tuple[str, ...] = (),
        monitor_interval: float = 1.0,
        kill_grace: float = 5.0,
    ) -> None:
        super().__init__(job_event_log_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        self._counter = ClusterIdCounter(state_dir / "local-backend-last-cluster-id")
        self._jobs_file = state_dir / "local-backend-jobs.json"
        self.max_concurrent = max_concurrent
        self.pilot_command = pilot_command or (sys.executable, "-m", "pilot")
        self.monitor_interval = monitor_interval
        self.kill_grace = kill_grace
        self._jobs: dict[tuple[int, int], LocalJob] = {}
        self._clusters: dict[int, ClusterRecord] = {}
        self._queue: list[LocalJob] = []
        self._logs: dict[Path, JobEventLogWriter] = {}
        self._monitor: asyncio.Task[None] | None = None
        self._closed = False
        self._load_state()

    # -- interface -------------------------------------------------------------------------------------------------

    async def submit(self, spec: JobSpec, count: int) -> Submitted:
        """Queue ``count`` pilot jobs in a new cluster and start as many as the concurrency limit allows."""
        if self._closed:
            raise BackendError("local backend is shutting down")
        if count < 1:
            raise BackendError(f"cannot submit {count} jobs")
        cluster = self._counter.next()
        self._clusters[cluster] = ClusterRecord(spec.taskforce_uuid, count, str(spec.job_event_log), time.time())
        log = self._log(spec.job_event_log)
        for proc in range(count):
            job = LocalJob(cluster, proc, spec)
            self._jobs[(cluster, proc)] = job
            self._queue.append(job)
            log.submit(cluster, proc)
        self._save_jobs()
        LOGGER.info("local: queued %d jobs as cluster %d for %s", count, cluster, spec.taskforce_uuid)
        await self._dispatch()
        if self._monitor is None:
            self._monitor = asyncio.create_task(self._monitor_loop(), name="local-backend-monitor")
        return Submitted(cluster_id=cluster, n_jobs=count)

    async def find_cluster(self, taskforce_uuid: str) -> FoundCluster | None:
        """The first cluster recorded for the taskforce, whether its jobs still run or not (also across restarts)."""
        mine = sorted(cluster for cluster, rec in self._clusters.items() if rec.taskforce_uuid == taskforce_uuid)
        if not mine:
            return None
        record = self._clusters[mine[0]]
        return FoundCluster(cluster_id=mine[0], n_jobs=record.n_jobs, job_event_log=Path(record.log))

    async def remove(self, cluster_id: int, reason: str) -> int:
        """Remove the cluster's jobs: queued and held ones at once, running ones by killing their process group."""
        jobs = [job for (cluster, _), job in self._jobs.items() if cluster == cluster_id]
        for job in jobs:
            if job.phase is JobPhase.RUNNING:
                self._stop(job, ("remove", reason, 0))
            else:
                if job in self._queue:
                    self._queue.remove(job)
                self._log(job.spec.job_event_log).aborted(job.cluster, job.proc, reason)
                del self._jobs[(job.cluster, job.proc)]
        self._save_jobs()
        LOGGER.info("local: removing %d jobs of cluster %d (%s)", len(jobs), cluster_id, reason)
        return len(jobs)

    async def close(self) -> None:
        """Stop every job (recorded as aborted) and the monitor."""
        self._closed = True
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        clusters = {cluster for cluster, _ in self._jobs}
        for cluster in clusters:
            await self.remove(cluster, "local backend stopped")
        waiters = [job.waiter for job in self._jobs.values() if job.waiter is not None]
        if waiters:
            await asyncio.gather(*waiters, return_exceptions=True)
        self._save_jobs()

    # -- running jobs ----------------------------------------------------------------------------------------------

    @property
    def n_running(self) -> int:
        """Jobs whose process is alive."""
        return sum(1 for job in self._jobs.values() if job.phase is JobPhase.RUNNING)

    async def _dispatch(self) -> None:
        while self._queue and self.n_running < self.max_concurrent and not self._closed:
            job = self._queue.pop(0)
            try:
                await self._start(job)
            except OSError as exc:
                LOGGER.error("local: cannot start job %d.%d: %s", job.cluster, job.proc, exc)
                self._log(job.spec.job_event_log).held(job.cluster, job.proc, f"Failed to start pilot: {exc}", 6)
                job.phase = JobPhase.HELD
                self._save_jobs()

    async def _start(self, job: LocalJob) -> None:
        workdir, env = self._prepare(job)
        stdout = self._output_path(job, "output", workdir / "_condor_stdout")
        stderr = self._output_path(job, "error", workdir / "_condor_stderr")
        job.phase = JobPhase.RUNNING  # counts against the limit from now on
        # recorded before the pilot runs: it writes its own events into the same log as soon as it starts
        self._log(job.spec.job_event_log).execute(job.cluster, job.proc)
        out, err = stdout.open("ab"), stderr.open("ab")
        with out, err:
            job.process = await asyncio.create_subprocess_exec(
                *self.pilot_command,
                env=env,
                cwd=workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        job.started_at = time.monotonic()
        job.waiter = asyncio.create_task(self._wait(job), name=f"local-job-{job.cluster}.{job.proc}")
        self._save_jobs()
        LOGGER.info(
            "local: started job %d.%d (pid %d) for %s", job.cluster, job.proc, job.process.pid, job.spec.taskforce_uuid
        )
        if job.stop_reason is not None:  # removed while it was being started
            self._signal_stop(job.process)

    @staticmethod
    def _prepare(job: LocalJob) -> tuple[Path, dict[str, str]]:
        """The job's sandbox (input files linked in, as HTCondor would transfer them) and environment."""
        spec = job.spec
        workdir = spec.taskforce_dir / f"cluster-{job.cluster}" / f"job-{job.proc}"
        workdir.mkdir(parents=True, exist_ok=True)
        for name in filter(None, (n.strip() for n in spec.submit_dict.get("transfer_input_files", "").split(","))):
            source, link = Path(name), workdir / Path(name).name
            if source.exists() and not link.exists():
                link.symlink_to(source.resolve())
        env = {key: os.environ[key] for key in PASSED_ENV if key in os.environ}
        env.update(spec.pilot_env)
        env.update(
            {
                "_EWMS_PILOT_CONTAINER_PLATFORM": "process",
                "_EWMS_PILOT_JOB_EVENT_LOG": str(spec.job_event_log),
                "_EWMS_PILOT_CLUSTER_ID": str(job.cluster),
                "_EWMS_PILOT_PROC_ID": str(job.proc),
            }
        )
        return workdir, env

    @staticmethod
    def _output_path(job: LocalJob, key: str, default: Path) -> Path:
        template = job.spec.submit_dict.get(key)
        if not template:
            return default
        path = Path(template.replace("$(ClusterId)", str(job.cluster)).replace("$(ProcId)", str(job.proc)))
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    async def _wait(self, job: LocalJob) -> None:
        """Wait for the pilot to end, record how it ended, start the next queued job."""
        assert job.process is not None
        returncode = await job.process.wait()
        _kill_group(job.process.pid, signal.SIGKILL)  # the pilot's leftover task processes, if any
        try:
            self._record_end(job, returncode)
        except OSError:
            LOGGER.exception("local: cannot record the end of job %d.%d", job.cluster, job.proc)
            self._forget(job)
        if not self._closed:
            await self._dispatch()

    def _record_end(self, job: LocalJob, returncode: int) -> None:
        log = self._log(job.spec.job_event_log)
        if job.stop_reason is None:
            if returncode >= 0:
                log.terminated(job.cluster, job.proc, returncode)
            else:
                log.terminated_by_signal(job.cluster, job.proc, -returncode)
            LOGGER.info("local: job %d.%d exited (%s)", job.cluster, job.proc, returncode)
            self._forget(job)
        elif job.stop_reason[0] == "remove":
            log.aborted(job.cluster, job.proc, job.stop_reason[1])
            self._forget(job)
        else:
            _, reason, code = job.stop_reason
            log.held(job.cluster, job.proc, reason, code)
            job.phase = JobPhase.HELD
            job.stop_reason = None
            LOGGER.warning("local: job %d.%d held (code %d): %s", job.cluster, job.proc, code, reason)
            self._save_jobs()

    def _stop(self, job: LocalJob, why: tuple[str, str, int]) -> None:
        """Stop a running job for ``why`` (recorded when its process has ended)."""
        if job.stop_reason is not None and job.stop_reason[0] == "remove":
            return
        job.stop_reason = why
        if job.process is not None:  # else it is being started: _start stops it once spawned
            self._signal_stop(job.process)

    def _signal_stop(self, process: asyncio.subprocess.Process) -> None:
        """SIGTERM to the job's process group; SIGKILL follows after the grace period."""
        _kill_group(process.pid, signal.SIGTERM)
        asyncio.get_running_loop().call_later(self.kill_grace, _kill_if_alive, process)

    def _forget(self, job: LocalJob) -> None:
        self._jobs.pop((job.cluster, job.proc), None)
        self._save_jobs()

    async def _monitor_loop(self) -> None:
        """Hold jobs that run longer than allowed or use more memory than requested."""
        while True:
            await asyncio.sleep(self.monitor_interval)
            try:
                self._check_limits()
            except Exception:
                LOGGER.exception("local: resource check failed")

    def _check_limits(self) -> None:
        running = [
            job
            for job in self._jobs.values()
            if job.phase is JobPhase.RUNNING and job.stop_reason is None and job.process is not None
        ]
        if not running:
            return
        rss = rss_by_process_group() if any(job.memory_limit_mb for job in running) else {}
        now = time.monotonic()
        for job in running:
            assert job.process is not None
            max_runtime = job.max_runtime
            if max_runtime is not None and now - job.started_at > max_runtime:
                reason = f"The job exceeded allowed execute duration of {_duration(max_runtime)}"
                self._stop(job, ("hold", reason, HOLD_CODE_JOB_EXECUTE_EXCEEDED))
                continue
            limit = job.memory_limit_mb
            used = rss.get(job.process.pid, 0) // (1024 * 1024)
            job.peak_rss_mb = max(job.peak_rss_mb, used)
            if limit is not None and used > limit:
                reason = (
                    f"Job has gone over memory limit of {int(limit)} megabytes. "
                    f"Peak usage: {job.peak_rss_mb} megabytes."
                )
                self._stop(job, ("hold", reason, HOLD_CODE_JOB_OUT_OF_RESOURCES))

    # -- bookkeeping -----------------------------------------------------------------------------------------------

    def _log(self, path: Path) -> JobEventLogWriter:
        if path not in self._logs:
            self._logs[path] = JobEventLogWriter(path)
        return self._logs[path]

    def _save_jobs(self) -> None:
        """Persist unfinished jobs (a restarted backend cleans them up) and the recent cluster records."""
        horizon = time.time() - CLUSTER_RECORD_SECONDS
        self._clusters = {cluster: rec for cluster, rec in self._clusters.items() if rec.submitted >= horizon}
        rows = [
            {
                "cluster": job.cluster,
                "proc": job.proc,
                "log": str(job.spec.job_event_log),
                "pgid": job.process.pid if job.process is not None and job.phase is JobPhase.RUNNING else None,
            }
            for job in self._jobs.values()
        ]
        clusters = [{"cluster": cluster, **asdict(rec)} for cluster, rec in self._clusters.items()]
        atomic_write_text(self._jobs_file, json.dumps({"jobs": rows, "clusters": clusters}))

    def _load_state(self) -> None:
        """Read the cluster records of previous runs; kill the jobs they left behind and record them as aborted."""
        try:
            state = json.loads(self._jobs_file.read_text())
        except FileNotFoundError:
            return
        except ValueError:
            LOGGER.error("local: unreadable %s; cannot clean up jobs of a previous run", self._jobs_file)
            return
        if isinstance(state, list):  # a state file written before cluster records were kept
            state = {"jobs": state}
        for record in state.get("clusters", []):
            cluster = int(record.pop("cluster"))
            self._clusters[cluster] = ClusterRecord(**record)
        rows = state.get("jobs", [])
        for row in rows:
            if row.get("pgid"):
                _kill_group(int(row["pgid"]), signal.SIGKILL)
            reason = "orphaned by a restart of the local backend"
            JobEventLogWriter(row["log"]).aborted(row["cluster"], row["proc"], reason)
        if rows:
            LOGGER.warning("local: recorded %d jobs of a previous run as aborted", len(rows))
        self._save_jobs()


def rss_by_process_group() -> dict[int, int]:
    """Resident memory (bytes) summed per process group, from ``/proc/<pid>/stat``."""
    totals: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        pgrp, rss_pages = int(fields[2]), int(fields[21])
        totals[pgrp] = totals.get(pgrp, 0) + rss_pages * _PAGE_SIZE
    return totals


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill_if_alive(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        _kill_group(process.pid, signal.SIGKILL)


def _positive_number(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw else 0.0
    except ValueError:
        return None
    return value if value > 0 else None


def _duration(seconds: float) -> str:
    """HTCondor's ``d+hh:mm:ss``."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    return f"{days}+{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
