"""The HTCondor job event log format: event type numbers, and a writer of entries that ``htcondor2.JobEventLog``
parses.

Written by the TMS ``local`` backend (submit, execute, terminated, aborted, held, released) and by pilots run by it
(generic events carrying chirp lines); read by the TMS watcher. Each event is appended with one ``write`` on an
``O_APPEND`` descriptor, so concurrent writers (backend and pilots) never interleave inside an event.
"""

from __future__ import annotations

import enum
import os
import time
from pathlib import Path


class EventType(enum.IntEnum):
    """The job event types (``htcondor2.JobEventType`` numbers) that are written or acted on."""

    SUBMIT = 0
    EXECUTE = 1
    JOB_EVICTED = 4
    JOB_TERMINATED = 5
    SHADOW_EXCEPTION = 7
    GENERIC = 8
    JOB_ABORTED = 9
    JOB_SUSPENDED = 10
    JOB_UNSUSPENDED = 11
    JOB_HELD = 12
    JOB_RELEASED = 13
    JOB_RECONNECT_FAILED = 24
    CLUSTER_REMOVE = 36


_USAGE = (
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Remote Usage\n"
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage\n"
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Remote Usage\n"
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Local Usage\n"
    "\t0  -  Run Bytes Sent By Job\n"
    "\t0  -  Run Bytes Received By Job\n"
    "\t0  -  Total Bytes Sent By Job\n"
    "\t0  -  Total Bytes Received By Job"
)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def format_event(code: int, cluster: int, proc: int, body: str, when: float | None = None) -> str:
    """Render one event: header line, body (first line continues the header), and the ``...`` terminator."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() if when is None else when))
    return f"{code:03d} ({cluster:03d}.{proc:03d}.000) {stamp} {body}\n...\n"


class JobEventLogWriter:
    """Appends events for jobs to one job event log file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _append(self, text: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def submit(self, cluster: int, proc: int) -> None:
        """Job entered the queue (idle)."""
        self._append(format_event(EventType.SUBMIT, cluster, proc, "Job submitted from host: <127.0.0.1:0>"))

    def execute(self, cluster: int, proc: int) -> None:
        """Job started running."""
        self._append(format_event(EventType.EXECUTE, cluster, proc, "Job executing on host: <127.0.0.1:0>"))

    def terminated(self, cluster: int, proc: int, return_value: int) -> None:
        """Job exited normally with ``return_value``."""
        body = f"Job terminated.\n\t(1) Normal termination (return value {int(return_value)})\n{_USAGE}"
        self._append(format_event(EventType.JOB_TERMINATED, cluster, proc, body))

    def terminated_by_signal(self, cluster: int, proc: int, signum: int) -> None:
        """Job ended because of a signal (the pilot did not exit by itself)."""
        body = f"Job terminated.\n\t(0) Abnormal termination (signal {int(signum)})\n\t(0) No core file\n{_USAGE}"
        self._append(format_event(EventType.JOB_TERMINATED, cluster, proc, body))

    def aborted(self, cluster: int, proc: int, reason: str) -> None:
        """Job was removed (condor_rm)."""
        self._append(format_event(EventType.JOB_ABORTED, cluster, proc, f"Job was aborted.\n\t{_one_line(reason)}"))

    def held(self, cluster: int, proc: int, reason: str, code: int, subcode: int = 0) -> None:
        """Job was put on hold with an HTCondor ``HoldReasonCode``."""
        body = f"Job was held.\n\t{_one_line(reason)}\n\tCode {int(code)} Subcode {int(subcode)}"
        self._append(format_event(EventType.JOB_HELD, cluster, proc, body))

    def released(self, cluster: int, proc: int) -> None:
        """Job was released from hold."""
        self._append(format_event(EventType.JOB_RELEASED, cluster, proc, "Job was released.\n\tvia local backend"))

    def generic(self, cluster: int, proc: int, info: str) -> None:
        """A generic (ulog) event, e.g. a pilot chirp line."""
        self._append(format_event(EventType.GENERIC, cluster, proc, _one_line(info)[:1000]))
