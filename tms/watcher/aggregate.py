"""Per-taskforce summaries of job states, and the only-changes bookkeeping of what the WMS was told."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tms.watcher.job_state import JobState

NULL_PILOT_STATUS = "null"  # a job whose pilot has not reported yet

CompoundStatuses = dict[str, dict[str, int]]
TopTaskErrors = dict[str, int]
EventCounters = dict[str, int]
Snapshot = tuple[CompoundStatuses, TopTaskErrors, EventCounters]


def compound_statuses(jobs: Iterable[JobState]) -> CompoundStatuses:
    """``{condor status (held: "HELD: <reason>"): {pilot status or "null": number of jobs}}``."""
    counts: Counter[tuple[str, str]] = Counter((job.condor_key, job.pilot_status or NULL_PILOT_STATUS) for job in jobs)
    out: CompoundStatuses = {}
    for (condor_key, pilot_key), n in sorted(counts.items()):
        out.setdefault(condor_key, {})[pilot_key] = n
    return out


def top_task_errors(jobs: Iterable[JobState], n: int) -> TopTaskErrors:
    """The ``n`` most common last task errors, counted over jobs."""
    counts = Counter(job.last_error for job in jobs if job.last_error)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n])


def event_counters(jobs: Iterable[JobState]) -> EventCounters:
    """The taskforce's event counters from its pilots' task counters: ``done`` (tasks that succeeded, their output
    published and their event acked), ``failed`` (tasks that failed), both summed over every job, ended ones
    included; ``in_flight`` (events started and not yet settled: ``total - done - failed``) summed over the jobs
    still in the queue (an ended job's unsettled events went back to their queue)."""
    done = failed = in_flight = 0
    for job in jobs:
        done += job.tasks_success
        failed += job.tasks_failed
        if not job.finished:
            in_flight += max(job.tasks_total - job.tasks_success - job.tasks_failed, 0)
    return {"done": done, "failed": failed, "in_flight": in_flight}


@dataclass
class StatusChanges:
    """A bulk status report holding only what changed."""

    compound_statuses: dict[str, CompoundStatuses] = field(default_factory=dict)
    top_task_errors: dict[str, TopTaskErrors] = field(default_factory=dict)
    event_counters: dict[str, EventCounters] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.compound_statuses or self.top_task_errors or self.event_counters)

    @property
    def taskforces(self) -> set[str]:
        """Taskforces included."""
        return set(self.compound_statuses) | set(self.top_task_errors) | set(self.event_counters)

    def chunks(self, max_bytes: int) -> list[StatusChanges]:
        """Split into reports of at most about ``max_bytes`` of JSON each (a taskforce's entries stay together;
        one taskforce larger than that goes alone)."""
        out: list[StatusChanges] = []
        size = max_bytes
        for uuid in sorted(self.taskforces):
            compound, errors = self.compound_statuses.get(uuid), self.top_task_errors.get(uuid)
            counters = self.event_counters.get(uuid)
            entry = len(json.dumps([compound, errors, counters]).encode()) + 3 * len(uuid) + 24  # keys, separators
            if size + entry > max_bytes:
                out.append(StatusChanges())
                size = 120  # the three top-level keys
            if compound is not None:
                out[-1].compound_statuses[uuid] = compound
            if errors is not None:
                out[-1].top_task_errors[uuid] = errors
            if counters is not None:
                out[-1].event_counters[uuid] = counters
            size += entry
        return out


class StatusTracker:
    """Remembers the last statuses sent per taskforce, to send only changes."""

    def __init__(self) -> None:
        self._compound: dict[str, CompoundStatuses] = {}
        self._errors: dict[str, TopTaskErrors] = {}
        self._counters: dict[str, EventCounters] = {}

    def changes(self, snapshots: Mapping[str, Snapshot]) -> StatusChanges:
        """What differs from the last sent values (empty summaries are never sent; counters are sent from the
        taskforce's first compound statuses on)."""
        out = StatusChanges()
        for uuid, (compound, errors, counters) in snapshots.items():
            if compound and compound != self._compound.get(uuid):
                out.compound_statuses[uuid] = compound
            if errors and errors != self._errors.get(uuid):
                out.top_task_errors[uuid] = errors
            if compound and counters != self._counters.get(uuid):
                out.event_counters[uuid] = counters
        return out

    def mark_sent(self, sent: StatusChanges) -> None:
        """Record a report the WMS accepted."""
        self._compound.update(sent.compound_statuses)
        self._errors.update(sent.top_task_errors)
        self._counters.update(sent.event_counters)

    def last_compound(self, uuid: str) -> CompoundStatuses:
        """The compound statuses the WMS was last told for ``uuid``."""
        return self._compound.get(uuid, {})
