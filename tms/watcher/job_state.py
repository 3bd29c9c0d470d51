"""What the watcher knows about one job, and how each job event changes it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ewms_wire.chirp import ChirpAttr, parse_chirp
from ewms_wire.job_event_log import EventType

IDLE, RUNNING, REMOVED, COMPLETED, HELD, SUSPENDED = "IDLE", "RUNNING", "REMOVED", "COMPLETED", "HELD", "SUSPENDED"
FINISHED = frozenset({REMOVED, COMPLETED})
ENDED = frozenset({REMOVED, COMPLETED, HELD})  # a job in one of these no longer runs: its output tails are shipped

# event type -> condor status (as condor_watch_q, except that an unsuspended job is running again)
STATUS_AFTER_EVENT: dict[int, str] = {
    EventType.SUBMIT: IDLE,
    EventType.EXECUTE: RUNNING,
    EventType.JOB_EVICTED: IDLE,
    EventType.JOB_TERMINATED: COMPLETED,
    EventType.SHADOW_EXCEPTION: IDLE,
    EventType.JOB_ABORTED: REMOVED,
    EventType.JOB_SUSPENDED: SUSPENDED,
    EventType.JOB_UNSUSPENDED: RUNNING,
    EventType.JOB_HELD: HELD,
    EventType.JOB_RELEASED: IDLE,
    EventType.JOB_RECONNECT_FAILED: IDLE,
}

# HoldReasonCode -> what it means (HTCondor manual, "HoldReasonCode"); the reason text itself varies per job
HOLD_CODE_MEANINGS = {
    1: "The user put the job on hold with condor_hold",
    3: "The job's periodic_hold or on_exit_hold expression was true",
    6: "The job's executable could not be started",
    7: "The job's standard output file could not be opened",
    12: "Transferring the job's output files failed",
    13: "Transferring the job's input files failed",
    14: "The job's initial working directory could not be accessed",
    15: "The job was submitted on hold",
    16: "The job's input files are being spooled",
    21: "The execute machine's policy put the job on hold",
    22: "The job event log could not be initialized",
    26: "The system periodic hold expression was true",
    32: "The maximum input transfer size was exceeded",
    33: "The maximum output transfer size was exceeded",
    34: "The job used more memory than its limit",
    35: "The container image was invalid",
    45: "The container runtime failed its self-test",
    46: "The job's allowed duration was exceeded",
    47: "The job's allowed execution time was exceeded",
}


def held_key(code: int, reason: str) -> str:
    """Compound-status key of a held job: ``HELD: <meaning of the hold code>`` (or the raw reason if unknown)."""
    meaning = HOLD_CODE_MEANINGS.get(code)
    if meaning is None:
        meaning = (reason or f"hold code {code}")[:200]
    return f"{HELD}: {meaning}"


class JobState:
    """One job's condor status, pilot status and task counters."""

    __slots__ = (
        "condor_key",
        "condor_status",
        "hold_code",
        "hold_reason",
        "last_error",
        "pilot_status",
        "return_value",
        "tasks_failed",
        "tasks_success",
        "tasks_total",
    )

    def __init__(self) -> None:
        self.condor_status = IDLE
        self.condor_key = IDLE  # outer compound-status key (held jobs carry their reason)
        self.hold_code = 0
        self.hold_reason = ""
        self.pilot_status: str | None = None
        self.tasks_total = 0
        self.tasks_failed = 0
        self.tasks_success = 0
        self.last_error: str | None = None
        self.return_value: int | None = None

    @property
    def finished(self) -> bool:
        """The job left the queue (completed or removed)."""
        return self.condor_status in FINISHED

    def set_status(self, status: str) -> None:
        """Apply a status-changing event."""
        self.condor_status = status
        if status != HELD:
            self.condor_key = status
            self.hold_code, self.hold_reason = 0, ""

    def hold(self, code: int, reason: str) -> None:
        """Apply a held event."""
        self.condor_status = HELD
        self.hold_code, self.hold_reason = code, reason
        self.condor_key = held_key(code, reason)

    def chirp(self, info: str) -> bool:
        """Apply a pilot chirp line; True when it changed something reported (pilot status or last error)."""
        update = chirp_update(info)
        if update is None:
            return False
        slot, value, reported = update
        if getattr(self, slot) == value:
            return False
        setattr(self, slot, value)
        return reported


# chirp attribute -> (JobState slot, reported to the WMS?); other attributes are ignored
_SLOTS = {
    ChirpAttr.STATUS.value: ("pilot_status", True),
    ChirpAttr.ERROR.value: ("last_error", True),
    ChirpAttr.TASKS_TOTAL.value: ("tasks_total", False),
    ChirpAttr.TASKS_FAILED.value: ("tasks_failed", False),
    ChirpAttr.TASKS_SUCCESS.value: ("tasks_success", False),
}
_UPDATES: dict[str, tuple[str, str | int, bool]] = {}
_UPDATES_MAX = 20_000


def chirp_update(info: str) -> tuple[str, str | int, bool] | None:
    """What a chirp line sets: ``(slot, value, reported)``, or None if it is not one the watcher keeps.

    Parsed once per distinct line (statuses, errors and small counters repeat across jobs and events).
    """
    try:
        return _UPDATES[info]
    except KeyError:
        pass
    slot_reported = _SLOTS.get(info.partition(": ")[0])
    if slot_reported is None:
        return None
    parsed = parse_chirp(info)
    if parsed is None:
        return None
    slot, reported = slot_reported
    value = parsed[1]
    if reported:
        value = str(value)
    elif isinstance(value, int | float):
        value = int(value)
    else:
        return None
    if len(_UPDATES) >= _UPDATES_MAX:
        _UPDATES.clear()
    update = _UPDATES[info] = (slot, value, reported)
    return update


class ClusterState:
    """The jobs of one cluster (one taskforce) as read from a log."""

    __slots__ = ("cluster_id", "dirty", "ended", "finished_stamp", "jobs", "removed")

    def __init__(self, cluster_id: int) -> None:
        self.cluster_id = cluster_id
        self.jobs: dict[int, JobState] = {}
        self.removed = False  # a CLUSTER_REMOVE event was seen
        self.dirty = False  # something reported changed since the last snapshot
        self.finished_stamp = ""  # "YYYY-MM-DD HH:MM:SS" (local) of the latest event that ended a job or the cluster
        self.ended: dict[int, str] = {}  # proc -> stamp of its latest terminated/aborted/held event, until collected

    def job(self, proc: int) -> JobState:
        """The job's state (created on its first event)."""
        job = self.jobs.get(proc)
        if job is None:
            job = self.jobs[proc] = JobState()
        return job

    def chirp(self, proc: int, info: str) -> None:
        """Apply a pilot chirp of one of the cluster's jobs."""
        if (self.jobs.get(proc) or self.job(proc)).chirp(info):
            self.dirty = True

    def update(self, proc: int, event_type: int, event: Mapping[str, Any], stamp: str) -> None:
        """Apply a non-generic event (``stamp``: its time as ``YYYY-MM-DD HH:MM:SS``)."""
        if event_type == EventType.CLUSTER_REMOVE:
            self.removed = self.dirty = True
            self.finished_stamp = max(self.finished_stamp, stamp)
            return
        status = STATUS_AFTER_EVENT.get(event_type)
        if status is None:
            return
        job = self.job(proc)
        before = job.condor_key
        if event_type == EventType.JOB_HELD:
            job.hold(int(event.get("HoldReasonCode", 0) or 0), str(event.get("HoldReason", "")))
            self.ended[proc] = stamp
        else:
            job.set_status(status)
            if event_type == EventType.JOB_TERMINATED:
                job.return_value = event.get("ReturnValue")
        if status in FINISHED:
            self.finished_stamp = max(self.finished_stamp, stamp)
            self.ended[proc] = stamp
        if job.condor_key != before or event_type == EventType.SUBMIT:
            self.dirty = True

    @property
    def finished_ts(self) -> int:
        """Epoch seconds of :attr:`finished_stamp` (0 if none)."""
        if not self.finished_stamp:
            return 0
        return int(time.mktime(time.strptime(self.finished_stamp, "%Y-%m-%d %H:%M:%S")))

    def is_complete(self, expected_jobs: int | None) -> bool:
        """All the cluster's jobs left the queue (and at least ``expected_jobs`` were seen), or it was removed."""
        if self.removed:
            return True
        if not self.jobs or len(self.jobs) < (expected_jobs or 0):
            return False
        return all(job.finished for job in self.jobs.values())
