"""Write HTCondor-format job event log entries that ``htcondor2.JobEventLog`` parses.

Used by the TMS ``local`` backend (submit, execute, terminated, aborted, held, released) and by pilots run by it
(generic events carrying chirp lines). Each event is appended with one ``write`` on an ``O_APPEND`` descriptor,
so concurrent writers (backend and pilots) never interleave inside an event.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SUBMIT, EXECUTE, GENERIC, TERMINATED, ABORTED, HELD, RELEASED = 0, 1, 8, 5, 9, 12, 13

_USAGE = (
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Remote Usage\n"
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage\n"
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Remote Usage\n"
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Local Usage\n"
    "\t0  -  Run Bytes Sent By Job\n"
    "\t0  -  Run Bytes Received By Job\n"
    "\t0  -  Total Bytes Sent By Job\n"
    "\t0  -  Total Bytes Received By Job\n"
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
        self._append(format_event(SUBMIT, cluster, proc, "Job submitted from host: <127.0.0.1:0>"))

    def execute(self, cluster: int, proc: int) -> None:
        """Job started running."""
        self._append(format_event(EXECUTE, cluster, proc, "Job executing on host: <127.0.0.1:0>"))

    def terminated(self, cluster: int, proc: int, return_value: int) -> None:
        """Job exited normally with ``return_value``."""
        body = f"Job terminated.\n\t(1) Normal termination (return value {int(return_value)})\n{_USAGE}"
        self._append(format_event(TERMINATED, cluster, proc, body.rstrip("\n")))

    def aborted(self, cluster: int, proc: int, reason: str) -> None:
        """Job was removed (condor_rm)."""
        self._append(format_event(ABORTED, cluster, proc, f"Job was aborted.\n\t{_one_line(reason)}"))

    def held(self, cluster: int, proc: int, reason: str, code: int, subcode: int = 0) -> None:
        """Job was put on hold with an HTCondor ``HoldReasonCode``."""
        body = f"Job was held.\n\t{_one_line(reason)}\n\tCode {int(code)} Subcode {int(subcode)}"
        self._append(format_event(HELD, cluster, proc, body))

    def released(self, cluster: int, proc: int) -> None:
        """Job was released from hold."""
        self._append(format_event(RELEASED, cluster, proc, "Job was released.\n\tvia local backend"))

    def generic(self, cluster: int, proc: int, info: str) -> None:
        """A generic (ulog) event, e.g. a pilot chirp line."""
        self._append(format_event(GENERIC, cluster, proc, _one_line(info)[:1000]))
