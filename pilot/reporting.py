"""Status reports as chirp lines (``"<Attr>: <value>"``, see :mod:`ewms_wire.chirp`), sent to one or more sinks.

Sinks: HTChirp inside HTCondor (``EWMS_PILOT_HTCHIRP=true``; ``ulog`` into the job event log, or job attributes
with ``EWMS_PILOT_HTCHIRP_DEST=JOB_ATTR``), and the local backend's job event log (``_EWMS_PILOT_JOB_EVENT_LOG``).
Status changes are sent at once together with any pending counters; counter and error updates are rate-limited to
one send per ``EWMS_PILOT_HTCHIRP_RATELIMIT_INTERVAL`` seconds, flushed by a timer at the end of the interval.
Each counter send is also logged (INFO): the pilot's progress in its log at the same pace, one line per interval
rather than one per event.
A sink that fails never stops the pilot: the failure is logged and the next report tries again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import htchirp

from ewms_wire.chirp import ChirpAttr, ChirpValue, PilotStatus, format_chirp
from ewms_wire.job_event_log import JobEventLogWriter
from pilot.config import ReportingConfig

LOGGER = logging.getLogger(__name__)

ChirpItems = Sequence[tuple[ChirpAttr, ChirpValue]]
COUNTER_ATTRS = (ChirpAttr.TASKS_TOTAL, ChirpAttr.TASKS_SUCCESS, ChirpAttr.TASKS_FAILED, ChirpAttr.ERROR)


class ChirpSink(Protocol):
    """Somewhere chirp lines go."""

    def send(self, items: ChirpItems) -> None:
        """Deliver the attribute updates, in order."""


class HTChirpSink:
    """HTChirp to the job's starter: ``ulog`` lines (job event log) or ``set_job_attr`` (job ClassAd)."""

    def __init__(self, dest: str, client_factory: Callable[[], Any] = htchirp.HTChirp) -> None:
        self.dest = dest
        self._client_factory = client_factory
        self._client: Any = None

    def __str__(self) -> str:
        return f"HTChirp ({self.dest})"

    def send(self, items: ChirpItems) -> None:
        if self._client is None:
            self._client = self._client_factory()  # reads $_CONDOR_CHIRP_CONFIG and authenticates
        with self._client as client:
            for attr, value in items:
                line = format_chirp(attr, value)
                if self.dest == "JOB_ATTR":
                    client.set_job_attr(attr.value, line.partition(": ")[2])
                else:
                    client.ulog(line)


class JobEventLogSink:
    """Generic events appended to a job event log, as the TMS local backend's pilots do."""

    def __init__(self, writer: JobEventLogWriter, cluster_id: int, proc_id: int) -> None:
        self.writer = writer
        self.cluster_id = cluster_id
        self.proc_id = proc_id

    def __str__(self) -> str:
        return f"job event log {self.writer.path} ({self.cluster_id}.{self.proc_id})"

    def send(self, items: ChirpItems) -> None:
        for attr, value in items:
            self.writer.generic(self.cluster_id, self.proc_id, format_chirp(attr, value))


def make_sinks(config: ReportingConfig, environ: Mapping[str, str] = os.environ) -> list[ChirpSink]:
    """The sinks ``config`` asks for (possibly none: then reports are only logged).

    HTChirp needs the chirp config the starter writes for jobs with ``+WantIOProxy = true``; without one (e.g. a
    pilot of the local backend, which gets ``EWMS_PILOT_HTCHIRP=true`` from the TMS too) HTChirp is left out.
    """
    sinks: list[ChirpSink] = []
    if config.htchirp:
        chirp_config = environ.get("_CONDOR_CHIRP_CONFIG", ".chirp.config")
        if os.path.isfile(chirp_config):
            sinks.append(HTChirpSink(config.htchirp_dest))
        else:
            LOGGER.warning(
                "EWMS_PILOT_HTCHIRP is on but there is no chirp config (%s): no HTChirp reports", chirp_config
            )
    if config.job_event_log is not None:
        sinks.append(JobEventLogSink(JobEventLogWriter(config.job_event_log), config.cluster_id, config.proc_id))
    return sinks


class StatusReporter:
    """Keeps the pilot's status, task counters and last error, and sends what changed."""

    def __init__(
        self,
        sinks: Sequence[ChirpSink],
        ratelimit_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sinks = list(sinks)
        self.ratelimit_interval = ratelimit_interval
        self.clock = clock
        self.status: PilotStatus | None = None
        self.tasks_total = 0
        self.tasks_success = 0
        self.tasks_failed = 0
        self.last_error = ""
        self._sent: dict[ChirpAttr, ChirpValue] = {}
        self._last_counter_send = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._failing_sinks: set[int] = set()
        self._logged = (0, 0, 0)  # counters in the last progress line

    def set_status(self, status: PilotStatus) -> None:
        """Report a status change now (with pending counter updates)."""
        LOGGER.info("pilot status: %s", status)
        self.status = status
        items: list[tuple[ChirpAttr, ChirpValue]] = [(ChirpAttr.STATUS, status.value)]
        if status is PilotStatus.STARTED:
            items.append((ChirpAttr.STARTED_TIMESTAMP, int(time.time())))
        self._send(self._changed_counters() + items)

    def fatal(self, error: str, traceback: str = "") -> None:
        """Report the error that ends the pilot, then the ``FatalError`` status."""
        LOGGER.error("pilot failed: %s", error)
        self.last_error = error
        if traceback:
            self._send([(ChirpAttr.ERROR_TRACEBACK, traceback)])
        self.set_status(PilotStatus.FATAL_ERROR)

    def task_started(self) -> None:
        """Count a task that started."""
        self.tasks_total += 1
        self._counters_changed()

    def task_succeeded(self) -> None:
        """Count a task that finished well."""
        self.tasks_success += 1
        self._counters_changed()

    def task_returned(self) -> None:
        """Uncount a started task whose event went back to its queue without a verdict (it is redelivered)."""
        self.tasks_total -= 1
        self._counters_changed()

    def task_failed(self, error: str) -> None:
        """Count a failed task and remember its error text."""
        self.tasks_failed += 1
        self.last_error = error
        self._counters_changed()

    def flush(self) -> None:
        """Send pending counter updates now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items = self._changed_counters()
        if items:
            self._send(items)

    def _changed_counters(self) -> list[tuple[ChirpAttr, ChirpValue]]:
        current: list[tuple[ChirpAttr, ChirpValue]] = [
            (ChirpAttr.TASKS_TOTAL, self.tasks_total),
            (ChirpAttr.TASKS_SUCCESS, self.tasks_success),
            (ChirpAttr.TASKS_FAILED, self.tasks_failed),
        ]
        if self.last_error:
            current.append((ChirpAttr.ERROR, self.last_error))
        return [(attr, value) for attr, value in current if self._sent.get(attr) != value]

    def _counters_changed(self) -> None:
        wait = self._last_counter_send + self.ratelimit_interval - self.clock()
        if wait <= 0:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(wait, self.flush)
            except RuntimeError:  # no event loop: the next status change sends the counters
                pass

    def _log_progress(self) -> None:
        counts = (self.tasks_total, self.tasks_success, self.tasks_failed)
        if counts == self._logged:
            return
        self._logged = counts
        started, succeeded, failed = counts
        LOGGER.info(
            "tasks so far: %d started, %d succeeded, %d failed, %d running",
            started, succeeded, failed, started - succeeded - failed,
        )  # fmt: skip

    def _send(self, items: list[tuple[ChirpAttr, ChirpValue]]) -> None:
        items = [*items, (ChirpAttr.LAST_UPDATED_TIMESTAMP, int(time.time()))]
        if any(attr in COUNTER_ATTRS for attr, _ in items):
            self._log_progress()
            self._last_counter_send = self.clock()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        for attr, value in items:
            self._sent[attr] = value
        for sink in self.sinks:
            try:
                sink.send(items)
            except Exception as exc:  # a report must never stop the pilot
                level = logging.DEBUG if id(sink) in self._failing_sinks else logging.WARNING
                LOGGER.log(level, "status report to %s failed: %r", sink, exc)
                self._failing_sinks.add(id(sink))
            else:
                self._failing_sinks.discard(id(sink))
