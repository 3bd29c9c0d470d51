"""Output tails of jobs, shipped to the WMS (``POST /v0/tms/logs/taskforces/{uuid}``).

Running jobs' growing tails go out every ``log_running_interval`` seconds (a job only when its files changed since
its last shipment; ``ended_ts`` null); the record of a job's end replaces them.

The watcher hands over each job that ended (terminated, removed or held) once its log has caught up. A job's files
are read when they stopped changing (a file written less than ``SETTLE_SECONDS`` ago must look the same on two
passes, for at most ``SETTLE_PATIENCE`` seconds), within ``READ_BUDGET`` seconds per pass. The records wait in a
bounded queue (oldest dropped first) and go out in one call per taskforce per pass (at most ``BATCH_MAX_JOBS``
jobs, about ``BATCH_MAX_BYTES``); a call that fails is repeated on the next pass. Each end of a job is handled once
per process: reading a log again from the top does not read the job's files again (a restarted TMS ships them once
more, which the WMS takes as a replacement).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import stat
import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ewms_client import WMSError
from tms import metrics
from tms.config import MAX_LOG_TAIL_BYTES, TMSConfig
from tms.submit_description import taskforce_dir
from tms.watcher.job_state import COMPLETED, JobState
from tms.wms_client import WMSClient

LOGGER = logging.getLogger(__name__)

MAX_CHARS = MAX_LOG_TAIL_BYTES  # per text field of a record (the WMS's limit)
BATCH_MAX_JOBS = 200
BATCH_MAX_BYTES = 768 * 1024  # JSON per call (the WMS refuses bodies over 1 MiB by default)
BATCH_MIN_BYTES = 64 * 1024  # the per-call budget never shrinks below this on 413 answers
QUEUE_MAX_BYTES = 64 * 1024 * 1024
QUEUE_MAX_JOBS = 50_000
SETTLE_SECONDS = 1.0
SETTLE_PATIENCE = 10.0
READ_BUDGET = 0.1  # seconds of file reading per pass

JobKey = tuple[int, int]  # (cluster, proc)
Signature = tuple[int, int] | None  # (size, mtime_ns) of a file, None if there is none


@dataclass(slots=True)
class _Ended:
    """A job whose files are not read yet."""

    uuid: str
    stamp: str
    exit_code: int | None
    task_error: str
    since: float
    seen: tuple[Signature, Signature] | None = None


@dataclass(slots=True)
class _Queued:
    uuid: str
    record: dict[str, Any]
    size: int


def output_files(cluster_dir: Path, names: Container[str], proc: int) -> tuple[Path | None, Path | None]:
    """A job's stdout and stderr, given the entries of its ``cluster-<C>`` dir: ``<P>.out``/``<P>.err`` (jobs
    submitted with ``do_transfer_worker_stdouterr``), else the local backend's ``job-<P>/_condor_stdout|stderr``."""
    out = cluster_dir / f"{proc}.out" if f"{proc}.out" in names else None
    err = cluster_dir / f"{proc}.err" if f"{proc}.err" in names else None
    if (out is None or err is None) and f"job-{proc}" in names:
        job_dir = cluster_dir / f"job-{proc}"
        out = out or job_dir / "_condor_stdout"
        err = err or job_dir / "_condor_stderr"
    return out, err


def read_tail(path: Path | None, n_bytes: int) -> str:
    """The last ``n_bytes`` of a file as UTF-8 (bad bytes replaced, a character cut at the start dropped), at most
    ``MAX_CHARS`` characters; ``""`` without a readable regular file. A symlink is not followed: the job directory
    belongs to the pilot's account, which must not make the TMS ship another file."""
    if path is None or n_bytes <= 0:
        return ""
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return ""
            start = max(f.seek(0, os.SEEK_END) - n_bytes, 0)
            f.seek(start)
            data = f.read(n_bytes)
    except OSError:
        return ""
    if start:
        cut = 0
        while cut < min(3, len(data)) and data[cut] & 0xC0 == 0x80:  # UTF-8 continuation bytes
            cut += 1
        data = data[cut:]
    return data.decode("utf-8", errors="replace")[-MAX_CHARS:]


@functools.lru_cache(maxsize=4096)
def stamp_epoch(stamp: str) -> float:
    """Epoch seconds of an event time ``YYYY-MM-DD HH:MM:SS`` (local time, as written in job event logs)."""
    try:
        fields = (int(stamp[:4]), int(stamp[5:7]), int(stamp[8:10]), int(stamp[11:13]), int(stamp[14:16]))
        return time.mktime((*fields, int(stamp[17:19]), 0, 0, -1))
    except (ValueError, OverflowError):
        return time.time()


def json_size(record: dict[str, Any]) -> int:
    """Bytes the record takes in a request body (an upper bound for small ones, where that is cheaper)."""
    n_chars = len(record["stdout_tail"]) + len(record["stderr_tail"]) + len(record["task_error"])
    if n_chars <= 512:
        return 160 + 6 * n_chars  # no character takes more than 6 bytes in JSON
    return len(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()) + 1


def _fit(record: dict[str, Any], size: int, limit: int) -> int:
    """Halve the longest text of the record (tails keep their end, the error its start) until it fits ``limit``."""
    while size > limit:
        name = max(("stdout_tail", "stderr_tail", "task_error"), key=lambda k: len(record[k]))
        text = record[name]
        if not text:
            break
        record[name] = text[: len(text) // 2] if name == "task_error" else text[len(text) - len(text) // 2 :]
        size = json_size(record)
    return size


def _signature(path: Path | None) -> Signature:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _listing(
    listings: dict[tuple[str, int], tuple[Path, set[str]]], config: TMSConfig, uuid: str, cluster: int
) -> tuple[Path, set[str]]:
    """A taskforce's ``cluster-<C>`` dir and its entries, listed once per pass (``listings``)."""
    listing = listings.get((uuid, cluster))
    if listing is None:
        cluster_dir = taskforce_dir(config, uuid) / f"cluster-{cluster}"
        try:
            listing = (cluster_dir, set(os.listdir(cluster_dir)))
        except OSError:
            listing = (cluster_dir, set())
        listings[(uuid, cluster)] = listing
    return listing


def _report_dropped(dropped: int) -> None:
    if dropped:
        LOGGER.warning("watcher: job log queue full; dropped the %d oldest job logs", dropped)
        metrics.JOB_LOGS.labels("dropped").inc(dropped)


class JobLogShipper:
    """Reads the output tails of running and ended jobs and ships them to the WMS, per taskforce."""

    def __init__(self, config: TMSConfig, wms: WMSClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._wms = wms
        self._clock = clock
        self._handled: dict[int, dict[int, str]] = {}  # cluster -> proc -> stamp of the end taken in
        self._waiting: dict[JobKey, _Ended] = {}
        self._queue: dict[JobKey, _Queued] = {}  # oldest first
        self._queued_bytes = 0
        self._batch_bytes = BATCH_MAX_BYTES
        self._running_due = 0.0
        self._running_seen: dict[JobKey, tuple[Signature, Signature]] = {}  # files of running jobs when last read

    @property
    def pending(self) -> int:
        """Jobs whose record is not in the WMS yet."""
        return len(self._waiting) + len(self._queue)

    def job_ended(self, uuid: str, cluster: int, proc: int, job: JobState, stamp: str) -> None:
        """Take in a job that ended at ``stamp`` (ignored when this end, or a later one, was taken in already)."""
        handled = self._handled.get(cluster)
        if handled is None:
            handled = self._handled[cluster] = {}
        elif handled.get(proc, "") >= stamp:
            return
        handled[proc] = stamp
        exit_code = job.return_value if job.condor_status == COMPLETED else None
        self._waiting[(cluster, proc)] = _Ended(uuid, stamp, exit_code, job.last_error or "", self._clock())

    def running_due(self) -> bool:
        """Whether running jobs' tails are to be read now (then not again for ``log_running_interval`` seconds)."""
        interval = self._config.log_running_interval
        if not interval or self._config.log_tail_bytes == 0 or self._clock() < self._running_due:
            return False
        self._running_due = self._clock() + interval
        return True

    def jobs_running(self, running: Iterable[tuple[str, int, int, JobState]]) -> None:
        """Queue the tails of running jobs ``(uuid, cluster, proc, job)`` whose files changed since last read (within
        the pass's read budget; jobs whose end was taken in are left to that record)."""
        deadline = self._clock() + READ_BUDGET
        now_running: dict[JobKey, tuple[Signature, Signature]] = {}
        listings: dict[tuple[str, int], tuple[Path, set[str]]] = {}
        dropped = 0
        for uuid, cluster, proc, job in running:
            key = (cluster, proc)
            if proc in self._handled.get(cluster, {}) or key in self._waiting:
                continue
            seen = self._running_seen.get(key)
            if self._clock() > deadline:
                if seen is not None:
                    now_running[key] = seen
                continue
            stdout, stderr = output_files(*_listing(listings, self._config, uuid, cluster), proc)
            signatures = (_signature(stdout), _signature(stderr))
            now_running[key] = signatures
            if signatures == seen or signatures == (None, None):
                continue
            record = {
                "job_id": f"{cluster}.{proc}",
                "stdout_tail": read_tail(stdout, self._config.log_tail_bytes),
                "stderr_tail": read_tail(stderr, self._config.log_tail_bytes),
                "task_error": (job.last_error or "")[:MAX_CHARS],
                "exit_code": None,
                "ended_ts": None,
            }
            size = _fit(record, json_size(record), BATCH_MAX_BYTES)
            dropped += self._enqueue(key, _Queued(uuid, record, size))
        self._running_seen = now_running
        _report_dropped(dropped)

    def forget(self, clusters: Iterable[int]) -> None:
        """Drop what is remembered about clusters whose log is no longer followed (their records still go out)."""
        for cluster in clusters:
            self._handled.pop(cluster, None)

    async def ship(self) -> None:
        """Read the files of settled jobs, then send one batch per taskforce; failures stay queued."""
        self._read_settled()
        if self._queue:
            await self._send()

    def _read_settled(self) -> None:
        if not self._waiting:
            return
        deadline = self._clock() + READ_BUDGET
        now = time.time()
        listings: dict[tuple[str, int], tuple[Path, set[str]]] = {}  # one listing per cluster dir and pass
        dropped = 0
        for key, ended in list(self._waiting.items()):
            if self._clock() > deadline:
                break
            cluster, proc = key
            listing = _listing(listings, self._config, ended.uuid, cluster)
            stdout_tail = stderr_tail = ""
            if listing[1]:  # (no cluster dir: no files to wait for or read)
                stdout, stderr = output_files(*listing, proc)
                if not self._settled(ended, (_signature(stdout), _signature(stderr)), now):
                    continue
                stdout_tail = read_tail(stdout, self._config.log_tail_bytes)
                stderr_tail = read_tail(stderr, self._config.log_tail_bytes)
            del self._waiting[key]
            record = {
                "job_id": f"{cluster}.{proc}",
                "stdout_tail": stdout_tail,
                "stderr_tail": stderr_tail,
                "task_error": ended.task_error[:MAX_CHARS],
                "exit_code": ended.exit_code,
                "ended_ts": stamp_epoch(ended.stamp),
            }
            size = json_size(record)
            if size > BATCH_MAX_BYTES:
                size = _fit(record, size, BATCH_MAX_BYTES)
            dropped += self._enqueue(key, _Queued(ended.uuid, record, size))
        _report_dropped(dropped)

    def _settled(self, ended: _Ended, signatures: tuple[Signature, Signature], now: float) -> bool:
        """Whether the job's files may be read: none was written lately, or they look as on the previous pass."""
        recent = any(sig is not None and now - sig[1] / 1e9 < SETTLE_SECONDS for sig in signatures)
        if not recent or signatures == ended.seen or self._clock() - ended.since >= SETTLE_PATIENCE:
            return True
        ended.seen = signatures
        return False

    def _enqueue(self, key: JobKey, queued: _Queued) -> int:
        """Queue a record (replacing one of the same job); returns how many old ones were dropped to make room."""
        old = self._queue.pop(key, None)
        if old is not None:
            self._queued_bytes -= old.size
        self._queue[key] = queued
        self._queued_bytes += queued.size
        dropped = 0
        while self._queued_bytes > QUEUE_MAX_BYTES or len(self._queue) > QUEUE_MAX_JOBS:
            self._queued_bytes -= self._queue.pop(next(iter(self._queue))).size
            dropped += 1
        return dropped

    def _batches(self) -> dict[str, list[JobKey]]:
        """Per taskforce, the oldest queued jobs that fit one call."""
        batches: dict[str, list[JobKey]] = {}
        sizes: dict[str, int] = {}
        for key, queued in self._queue.items():
            keys = batches.setdefault(queued.uuid, [])
            size = sizes.get(queued.uuid, 0) + queued.size
            if len(keys) >= BATCH_MAX_JOBS or (keys and size > self._batch_bytes):
                continue
            keys.append(key)
            sizes[queued.uuid] = size
        return batches

    async def _send(self) -> None:
        for uuid, keys in self._batches().items():
            try:
                await self._wms.send_job_logs(uuid, [self._queue[key].record for key in keys])
            except WMSError as exc:
                if not exc.is_unavailable:
                    self._refused(uuid, keys, exc)
                    continue
                LOGGER.warning(
                    "watcher: logs of %d jobs of %s not shipped (retrying next pass): %s", len(keys), uuid, exc
                )
                metrics.JOB_LOGS.labels("failed").inc(len(keys))
                return  # the WMS is away: the other taskforces wait for the next pass too
            self._remove(keys)
            metrics.JOB_LOGS.labels("sent").inc(len(keys))
            LOGGER.debug("watcher: shipped the logs of %d jobs of %s", len(keys), uuid)

    def _refused(self, uuid: str, keys: list[JobKey], exc: WMSError) -> None:
        """A 413 shrinks the batches (the records are kept); any other refusal would repeat: drop the records."""
        if exc.status == 413 and len(keys) > 1 and self._batch_bytes > BATCH_MIN_BYTES:
            self._batch_bytes = max(self._batch_bytes // 2, BATCH_MIN_BYTES)
            LOGGER.warning("watcher: WMS refused a job log batch as too large; now at most %d bytes", self._batch_bytes)
            return
        if exc.status == 404:  # the taskforce is gone: so are all its other records
            keys = [key for key, queued in self._queue.items() if queued.uuid == uuid]
        LOGGER.error("watcher: WMS refused the logs of %d jobs of %s; dropped: %s", len(keys), uuid, exc.detail)
        self._remove(keys)
        metrics.JOB_LOGS.labels("dropped").inc(len(keys))

    def _remove(self, keys: Iterable[JobKey]) -> None:
        for key in keys:
            self._queued_bytes -= self._queue.pop(key).size
