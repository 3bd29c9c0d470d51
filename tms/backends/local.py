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

Isolation: started as root, the backend runs pilots as an unprivileged account (``pilot_user``, created by
scripts/setup.sh) in a sandbox of their own under ``sandbox_dir`` (0711: searchable, not listable), deleted when the
job ends. The TMS's own directories become 0700 and the pilot needs no path into them: its stdout and stderr are
opened by the backend, and it writes its chirps into a private log in its sandbox, which the backend relays into the
shared job event log, keeping only generic events and rewriting them as the job's own (so a task cannot forge events
of other jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
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
PRIVATE_LOG_NAME = "ewms-pilot-events.log"  # the pilot's own log in its job directory (relayed, see module doc)
RELAY_MAX_BYTES = 1024 * 1024  # read at most this much of a private log per relay
_CHIRP_RE = re.compile(r"^008 \([0-9]+\.[0-9]+\.[0-9]+\) [0-9: -]{19} ([^\n]{0,1000})\n\.\.\.\n", re.MULTILINE)


@dataclass(frozen=True)
class PilotAccount:
    """The unprivileged account pilots run as."""

    name: str
    uid: int
    gid: int


def pilot_account(name: str | None) -> PilotAccount | None:
    """The account to run pilots as: ``name`` when this process is root, else none (pilots run as this user)."""
    if not name or os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise BackendError(
            f"pilot account {name!r} does not exist: create it (scripts/setup.sh) or set TMS_LOCAL_PILOT_USER"
        ) from exc
    if entry.pw_uid == 0:
        raise BackendError(f"pilot account {name!r} is root: pilots must run unprivileged")
    return PilotAccount(name, entry.pw_uid, entry.pw_gid)


def check_reachable(path: Path, account: PilotAccount) -> None:
    """Raise BackendError unless ``account`` can search (or execute) ``path`` and every directory above it."""
    for node in [*reversed(path.parents), path]:
        try:
            st = node.stat()
        except OSError as exc:
            raise BackendError(f"{path}: {exc}") from exc
        bit = stat.S_IXUSR if st.st_uid == account.uid else stat.S_IXGRP if st.st_gid == account.gid else stat.S_IXOTH
        if not st.st_mode & bit:
            raise BackendError(
                f"pilot account {account.name!r} cannot reach {path}: {node} is not searchable for it"
                " (scripts/setup.sh grants that for the project's Python)"
            )


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
    sandbox: Path | None = None  # when the pilot runs unprivileged: its working directory, deleted at the end
    private_log: Path | None = None  # and its own event log there, relayed by the backend
    relayed: int = 0  # bytes of private_log already relayed
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
        pilot_user: str | None = None,
        sandbox_dir: Path = Path("/var/tmp/ewms-pilot-sandboxes"),
    ) -> None:
        super().__init__(job_event_log_dir)
        self.account = pilot_account(pilot_user)
        state_dir.mkdir(parents=True, exist_ok=True)
        self._counter = ClusterIdCounter(state_dir / "local-backend-last-cluster-id")
        self._jobs_file = state_dir / "local-backend-jobs.json"
        self.max_concurrent = max_concurrent
        self.pilot_command = pilot_command or (sys.executable, "-m", "pilot")
        if self.account is not None:  # the pilot needs no path into the TMS's dirs (see the module docstring)
            job_event_log_dir.mkdir(parents=True, exist_ok=True)
            for own in (state_dir, job_event_log_dir):
                own.chmod(0o700)
            sandbox_dir.mkdir(parents=True, exist_ok=True)
            sandbox_dir.chmod(0o711)
            check_reachable(sandbox_dir, self.account)
            command = self.pilot_command[0]
            check_reachable(Path(os.path.realpath(shutil.which(command) or command)), self.account)
        self.sandbox_dir = sandbox_dir
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
        bad = [key for key, value in spec.pilot_env.items() if not key.isidentifier() or "\0" in value]
        if bad:  # the process could not start: refuse the submission rather than hold every job
            raise BackendError(f"pilot environment: {bad[0][:64]!r} is not an identifier or its value holds NUL")
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
            except (OSError, ValueError, subprocess.SubprocessError) as exc:  # held: its slot goes to the next job
                LOGGER.error("local: cannot start job %d.%d: %s", job.cluster, job.proc, exc)
                self._log(job.spec.job_event_log).held(job.cluster, job.proc, f"Failed to start pilot: {exc}", 6)
                job.phase = JobPhase.HELD
                self._save_jobs()

    async def _start(self, job: LocalJob) -> None:
        job_dir, workdir, env = self._prepare(job)
        account = self.account
        stdout = self._output_path(job, "output", job_dir / "_condor_stdout")
        stderr = self._output_path(job, "error", job_dir / "_condor_stderr")
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
                # the pilot account, if any (the child enters ``cwd`` before it drops privileges)
                user=None if account is None else account.uid,
                group=None if account is None else account.gid,
                extra_groups=None if account is None else [],
            )
        job.started_at = time.monotonic()
        job.waiter = asyncio.create_task(self._wait(job), name=f"local-job-{job.cluster}.{job.proc}")
        self._save_jobs()
        LOGGER.info(
            "local: started job %d.%d (pid %d) for %s", job.cluster, job.proc, job.process.pid, job.spec.taskforce_uuid
        )
        if job.stop_reason is not None:  # removed while it was being started
            self._signal_stop(job.process)

    def _prepare(self, job: LocalJob) -> tuple[Path, Path, dict[str, str]]:
        """The job's directory (for its output), its working directory (the same, or its sandbox when the pilot runs
        unprivileged; input files linked in, as HTCondor would transfer them) and its environment."""
        spec = job.spec
        job_dir = workdir = spec.taskforce_dir / f"cluster-{job.cluster}" / f"job-{job.proc}"
        job_dir.mkdir(parents=True, exist_ok=True)
        if self.account is not None:
            workdir = job.sandbox = self.sandbox_dir / f"{spec.taskforce_uuid}.{job.cluster}.{job.proc}"
            workdir.mkdir(mode=0o700, exist_ok=True)
            os.chown(workdir, self.account.uid, self.account.gid)
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
        if self.account is not None:
            job.private_log, job.relayed = workdir / PRIVATE_LOG_NAME, 0
            job.private_log.touch(mode=0o600)
            os.chown(job.private_log, self.account.uid, self.account.gid)
            env.update(
                {
                    "_EWMS_PILOT_JOB_EVENT_LOG": str(job.private_log),
                    "HOME": str(workdir),
                    "USER": self.account.name,
                    "LOGNAME": self.account.name,
                }
            )
        return job_dir, workdir, env

    def _relay(self, job: LocalJob) -> None:
        """Copy the pilot's new chirps from its private log into the shared log, as generic events of this job."""
        if job.private_log is None:
            return
        try:  # the pilot owns that directory: never follow a symlink or block on a FIFO it put there
            with open(os.open(job.private_log, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    return
                f.seek(job.relayed)
                chunk = f.read(RELAY_MAX_BYTES)
        except OSError:
            return
        end = chunk.rfind(b"\n...\n")
        if end < 0:  # no complete event yet; a full chunk without one is garbage, skipped
            job.relayed += len(chunk) if len(chunk) == RELAY_MAX_BYTES else 0
            return
        job.relayed += end + 5
        log = self._log(job.spec.job_event_log)
        for match in _CHIRP_RE.finditer(chunk[: end + 5].decode("utf-8", "replace")):
            log.generic(job.cluster, job.proc, match.group(1))

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
            self._relay(job)
            self._record_end(job, returncode)
        except OSError:
            LOGGER.exception("local: cannot record the end of job %d.%d", job.cluster, job.proc)
            self._forget(job)
        if job.sandbox is not None:
            shutil.rmtree(job.sandbox, ignore_errors=True)
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
        for job in self._jobs.values():
            if job.phase is JobPhase.RUNNING:
                self._relay(job)
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
