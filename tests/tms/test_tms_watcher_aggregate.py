"""Watcher aggregation on real-format logs parsed by htcondor2: exact compound statuses, top errors, only-changes."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from tms_fakes import DATA

from ewms_wire.chirp import ChirpAttr, format_chirp
from ewms_wire.job_event_log import JobEventLogWriter
from tms.watcher.aggregate import StatusChanges, StatusTracker, compound_statuses, event_counters, top_task_errors
from tms.watcher.cluster_map import ClusterMap, TaskforceRef
from tms.watcher.job_state import JobState
from tms.watcher.loop import WatchedLog

FIXTURE = DATA / "two_taskforces.tms.jel"
MEMORY_HELD = "HELD: The job used more memory than its limit"
EXPECTED_A = {
    "COMPLETED": {"Done": 1},
    MEMORY_HELD: {"Started": 1},
    "IDLE": {"null": 1},
    "RUNNING": {"Tasking": 1},
}
EXPECTED_B = {"COMPLETED": {"Tasking": 1}, "REMOVED": {"FatalError": 1, "null": 1}}


def watched(path: Path) -> WatchedLog:
    """A WatchedLog whose clusters 101/102 are mapped (as the starter would register them) and 999 is foreign."""
    cmap = ClusterMap(wms=None, schedd="ap.test", log_path=path, give_up_after=0)  # type: ignore[arg-type]
    cmap.register(101, TaskforceRef("TF-A", 4))
    cmap.register(102, TaskforceRef("TF-B", 3))
    cmap.foreign.add(999)
    return WatchedLog(path, cmap)


def summary(log: WatchedLog, cluster_id: int) -> tuple[dict, dict]:
    jobs = list(log.clusters[cluster_id].jobs.values())
    return compound_statuses(jobs), top_task_errors(jobs, 10)


def test_fixture_gives_exact_statuses_and_errors() -> None:
    log = watched(FIXTURE)
    assert log.consume(10_000) == 49
    assert log.reader.exhausted
    assert summary(log, 101) == (EXPECTED_A, {"task failed (exit code 1): boom": 2})
    assert summary(log, 102) == (EXPECTED_B, {"[Timeout-Error] timed out after 60s": 1})
    assert 999 not in log.clusters  # foreign cluster ignored


def test_job_details_are_kept() -> None:
    log = watched(FIXTURE)
    log.consume(10_000)
    a, b = log.clusters[101].jobs, log.clusters[102].jobs
    assert (a[0].tasks_total, a[0].tasks_success, a[0].tasks_failed, a[0].return_value) == (3, 2, 1, 0)
    assert a[2].hold_code == 34 and "cgroup memory limit of 512 megabytes" in a[2].hold_reason
    assert b[0].hold_code == 0  # released after its hold
    assert b[1].condor_key == "COMPLETED" and b[1].return_value is None  # killed by a signal


def test_completion_rules() -> None:
    log = watched(FIXTURE)
    log.consume(10_000)
    a, b = log.clusters[101], log.clusters[102]
    assert not a.is_complete(4)  # jobs still idle, running and held
    assert b.removed and b.is_complete(3)
    assert b.finished_ts > 0


def test_rereading_in_any_chunks_gives_the_same_totals() -> None:
    reference = watched(FIXTURE)
    reference.consume(10_000)
    rng = random.Random(7)
    for _ in range(5):
        again = watched(FIXTURE)
        while not again.reader.exhausted or again.reader.has_news():
            again.consume(rng.randint(1, 7))
        for cluster_id in (101, 102):
            assert summary(again, cluster_id) == summary(reference, cluster_id)


def test_growing_log_with_split_writes(tmp_path: Path) -> None:
    """Bytes appended in arbitrary pieces (events cut mid-line) give the same result once complete."""
    path = tmp_path / "grow.tms.jel"
    data = FIXTURE.read_bytes()
    log = watched(path)
    path.write_bytes(b"")
    rng = random.Random(3)
    pos = 0
    while pos < len(data):
        step = rng.randint(1, 400)
        with path.open("ab") as f:
            f.write(data[pos : pos + step])
        pos += step
        while log.reader.has_news() and log.consume(1000):
            pass
    assert summary(log, 101) == (EXPECTED_A, {"task failed (exit code 1): boom": 2})
    assert summary(log, 102)[0] == EXPECTED_B


def test_rotation_replaced_file_is_read_from_the_top(tmp_path: Path) -> None:
    path = tmp_path / "rot.tms.jel"
    writer = JobEventLogWriter(path)
    writer.submit(101, 0)
    writer.execute(101, 0)
    log = watched(path)
    log.consume(100)
    assert summary(log, 101)[0] == {"RUNNING": {"null": 1}}
    # rotated: a new file at the same path, holding only newer events
    path.rename(tmp_path / "rot.tms.jel.old")
    writer.generic(101, 0, format_chirp(ChirpAttr.STATUS, "Tasking"))
    writer.terminated(101, 0, 0)
    assert log.reader.has_news()
    log.consume(100)
    assert log.reader.n_rotations == 1
    assert summary(log, 101)[0] == {"COMPLETED": {"Tasking": 1}}


def test_truncated_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "trunc.tms.jel"
    shutil.copy(FIXTURE, path)
    log = watched(path)
    log.consume(10_000)
    path.write_bytes(b"")  # truncated in place (same inode)
    JobEventLogWriter(path).submit(101, 9)
    log.consume(100)
    assert log.reader.n_rotations == 1
    assert 9 in log.clusters[101].jobs
    assert summary(log, 101)[0]["IDLE"] == {"null": 2}


def test_nothing_new_means_no_parsing(tmp_path: Path) -> None:
    path = tmp_path / "idle.tms.jel"
    shutil.copy(FIXTURE, path)
    log = watched(path)
    log.consume(10_000)
    assert not log.reader.has_news()
    assert log.consume(100) == 0


def write_broken_tail(path: Path) -> JobEventLogWriter:
    writer = JobEventLogWriter(path)
    writer.submit(101, 0)
    with path.open("a") as f:  # a writer died in the middle of an event
        f.write("001 (101.000.000) 2026-03-02 10:00:00 Job executing on host: <1.2.3.4:0>\n\x00\x00garbage\n")
    return writer


def finish_after_broken_tail(log: WatchedLog, writer: JobEventLogWriter) -> None:
    writer.generic(101, 0, format_chirp(ChirpAttr.STATUS, "Started"))  # may be swallowed by the broken event
    writer.generic(101, 0, format_chirp(ChirpAttr.STATUS, "Tasking"))
    writer.terminated(101, 0, 0)
    while log.reader.has_news() and log.consume(100):
        pass
    assert summary(log, 101)[0] == {"COMPLETED": {"Tasking": 1}}


def test_unfinished_tail_waits_for_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.tms.jel"
    writer = write_broken_tail(path)
    log = watched(path)
    assert log.consume(100) == 0  # the parser is not called on an unfinished tail
    assert log.reader.has_news()  # ... and the tail is checked again on the next pass
    assert not log.caught_up_once
    finish_after_broken_tail(log, writer)


def test_stale_unfinished_tail_does_not_hide_earlier_events(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("tms.watcher.log_reader.PARTIAL_TAIL_PATIENCE", 0.0)
    path = tmp_path / "corrupt.tms.jel"
    writer = write_broken_tail(path)
    log = watched(path)
    log.consume(100)
    assert summary(log, 101)[0] == {"IDLE": {"null": 1}}
    assert not log.reader.has_news()  # no retry until the file changes
    finish_after_broken_tail(log, writer)


def test_tracker_sends_only_changes() -> None:
    tracker = StatusTracker()
    zero = {"done": 0, "failed": 0, "in_flight": 0}
    first = tracker.changes({"TF-A": (EXPECTED_A, {"e": 1}, zero), "TF-B": ({}, {}, zero)})
    assert first.compound_statuses == {"TF-A": EXPECTED_A} and first.top_task_errors == {"TF-A": {"e": 1}}
    assert first.event_counters == {"TF-A": zero}
    assert first.taskforces == {"TF-A"}
    tracker.mark_sent(first)
    assert not tracker.changes({"TF-A": (EXPECTED_A, {"e": 1}, zero)})
    changed = tracker.changes({"TF-A": (EXPECTED_B, {"e": 1}, zero)})
    assert changed.compound_statuses == {"TF-A": EXPECTED_B} and not changed.top_task_errors
    assert not changed.event_counters
    counted = tracker.changes({"TF-A": (EXPECTED_A, {"e": 1}, {**zero, "done": 3})})
    assert counted.event_counters == {"TF-A": {**zero, "done": 3}} and counted.taskforces == {"TF-A"}


def counted_job(total: int, success: int, failed: int, status: str = "RUNNING") -> JobState:
    job = JobState()
    job.set_status(status)
    for attr, value in (
        (ChirpAttr.TASKS_TOTAL, total), (ChirpAttr.TASKS_SUCCESS, success), (ChirpAttr.TASKS_FAILED, failed),
    ):  # fmt: skip
        job.chirp(format_chirp(attr, value))
    return job


def test_event_counters_sum_jobs_and_count_in_flight_over_live_jobs_only() -> None:
    jobs = [
        counted_job(10, 6, 1),  # 3 in flight
        counted_job(5, 5, 0, "COMPLETED"),
        counted_job(4, 1, 1, "REMOVED"),  # its 2 unsettled events went back to the queue
        counted_job(2, 0, 0, "HELD"),  # held: still in the queue, its 2 events are unacked until it is removed
        JobState(),  # not reported yet
    ]
    assert event_counters(jobs) == {"done": 12, "failed": 2, "in_flight": 5}
    assert event_counters([]) == {"done": 0, "failed": 0, "in_flight": 0}


def test_event_counters_from_real_log_chirps(tmp_path: Path) -> None:
    path = tmp_path / "counters.tms.jel"
    writer = JobEventLogWriter(path)
    writer.submit(101, 0)
    writer.submit(101, 1)
    writer.execute(101, 0)
    writer.execute(101, 1)
    for proc, (total, success, failed) in ((0, (7, 4, 1)), (1, (3, 3, 0))):
        for attr, value in (
            (ChirpAttr.TASKS_TOTAL, total), (ChirpAttr.TASKS_SUCCESS, success), (ChirpAttr.TASKS_FAILED, failed),
        ):  # fmt: skip
            writer.generic(101, proc, format_chirp(attr, value))
    log = watched(path)
    log.consume(100)
    assert event_counters(log.clusters[101].jobs.values()) == {"done": 7, "failed": 1, "in_flight": 2}
    writer.terminated(101, 0, 0)
    log.consume(100)
    assert event_counters(log.clusters[101].jobs.values()) == {"done": 7, "failed": 1, "in_flight": 0}


def test_counters_split_with_their_taskforce() -> None:
    counters = {"done": 1, "failed": 0, "in_flight": 0}
    changes = StatusChanges(
        compound_statuses={f"TF-{i}": {"RUNNING": {"Tasking": 1}} for i in range(6)},
        event_counters={f"TF-{i}": counters for i in range(6)},
    )
    chunks = changes.chunks(300)
    assert len(chunks) > 1
    for chunk in chunks:
        assert set(chunk.event_counters) == set(chunk.compound_statuses)
    assert sum(len(c.event_counters) for c in chunks) == 6


def test_top_errors_are_limited_and_ordered() -> None:
    jobs = []
    for err in ["b", "a", "a", "c", "c", "c", "d", None]:
        job = JobState()
        job.last_error = err
        jobs.append(job)
    assert top_task_errors(jobs, 2) == {"c": 3, "a": 2}
    assert compound_statuses(jobs) == {"IDLE": {"null": 8}}
