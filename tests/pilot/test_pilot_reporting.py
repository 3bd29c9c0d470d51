"""Status reports: rate-limited counters, always-sent status changes, HTChirp over its wire protocol."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pilot_helpers import FakeChirpServer, chirps

from ewms_wire.chirp import ChirpAttr, ChirpValue, PilotStatus, parse_chirp
from ewms_wire.job_event_log import JobEventLogWriter
from pilot.config import ReportingConfig
from pilot.reporting import ChirpItems, HTChirpSink, JobEventLogSink, StatusReporter, make_sinks


class ListSink:
    def __init__(self) -> None:
        self.items: list[tuple[ChirpAttr, ChirpValue]] = []

    def send(self, items: ChirpItems) -> None:
        self.items.extend(i for i in items if i[0] is not ChirpAttr.LAST_UPDATED_TIMESTAMP)


class BrokenSink:
    def send(self, items: ChirpItems) -> None:
        raise OSError("starter went away")


def test_counters_are_rate_limited_but_status_changes_always_go_out() -> None:
    now = [0.0]
    sink = ListSink()
    reporter = StatusReporter([BrokenSink(), sink], ratelimit_interval=60, clock=lambda: now[0])
    reporter.set_status(PilotStatus.STARTED)
    assert (ChirpAttr.STATUS, "Started") in sink.items
    assert (ChirpAttr.TASKS_TOTAL, 0) in sink.items
    sink.items.clear()

    now[0] = 10.0
    reporter.task_started()
    reporter.task_failed("task failed (exit code 3): boom")
    assert sink.items == []  # within the interval: held back

    reporter.set_status(PilotStatus.TASKING)  # a status change carries the pending counters
    assert sink.items == [
        (ChirpAttr.TASKS_TOTAL, 1),
        (ChirpAttr.TASKS_FAILED, 1),
        (ChirpAttr.ERROR, "task failed (exit code 3): boom"),
        (ChirpAttr.STATUS, "Tasking"),
    ]
    sink.items.clear()

    now[0] = 20.0
    reporter.task_started()
    assert sink.items == []
    now[0] = 71.0
    reporter.task_succeeded()  # the interval has passed: sent at once, with everything that changed
    assert sink.items == [(ChirpAttr.TASKS_TOTAL, 2), (ChirpAttr.TASKS_SUCCESS, 1)]


def test_each_counter_report_is_logged_as_progress(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    reporter = StatusReporter([], ratelimit_interval=60, clock=lambda: now[0])  # no sink: still logged
    reporter.set_status(PilotStatus.TASKING)
    caplog.clear()
    caplog.set_level(logging.INFO, logger="pilot.reporting")
    now[0] = 10.0
    for _ in range(3):
        reporter.task_started()
    reporter.task_succeeded()
    reporter.task_failed("boom")
    assert caplog.messages == []  # held back with the counters
    now[0] = 71.0
    reporter.task_succeeded()
    assert caplog.messages == ["tasks so far: 3 started, 2 succeeded, 1 failed, 0 running"]
    reporter.task_started()
    reporter.set_status(PilotStatus.DONE)  # the last status carries the last counters
    assert caplog.messages[1:] == ["pilot status: Done", "tasks so far: 4 started, 2 succeeded, 1 failed, 1 running"]


async def test_held_back_counters_are_flushed_by_a_timer() -> None:
    sink = ListSink()
    reporter = StatusReporter([sink], ratelimit_interval=0.2)
    reporter.set_status(PilotStatus.TASKING)
    sink.items.clear()
    reporter.task_started()
    assert sink.items == []
    await asyncio.sleep(0.6)
    assert sink.items == [(ChirpAttr.TASKS_TOTAL, 1)]


def test_job_event_log_sink_writes_generic_events(tmp_path: Path) -> None:
    reporter = StatusReporter([JobEventLogSink(JobEventLogWriter(tmp_path / "jel"), 12, 4)])
    reporter.set_status(PilotStatus.STARTED)
    reporter.fatal('init task failed (exit code 4): "quoted"\nsecond line')
    reported = dict(chirps(tmp_path / "jel"))
    assert reported[ChirpAttr.STATUS] == "FatalError"
    assert reported[ChirpAttr.ERROR] == 'init task failed (exit code 4): "quoted"\nsecond line'


@pytest.fixture
def chirp_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeChirpServer]:
    server = FakeChirpServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = tmp_path / ".chirp.config"
    config.write_text(f"127.0.0.1 {server.server_address[1]} {server.cookie}\n")
    monkeypatch.setenv("_CONDOR_CHIRP_CONFIG", str(config))
    yield server
    server.shutdown()
    server.server_close()


def test_htchirp_ulog_lines_reach_the_starter(chirp_server: FakeChirpServer) -> None:
    reporter = StatusReporter([HTChirpSink("JOB_EVENT_LOG")])
    reporter.set_status(PilotStatus.STARTED)
    reporter.task_started()
    reporter.task_failed("task timed out after 2s")
    reporter.set_status(PilotStatus.DONE)
    parsed = [parse_chirp(line) for line in chirp_server.lines]
    assert (ChirpAttr.STATUS, "Started") in parsed
    assert (ChirpAttr.ERROR, "task timed out after 2s") in parsed
    assert parsed[-2] == (ChirpAttr.STATUS, "Done")  # then LastUpdatedTimestamp


def test_htchirp_job_attributes(chirp_server: FakeChirpServer) -> None:
    StatusReporter([HTChirpSink("JOB_ATTR")]).set_status(PilotStatus.TASKING)
    assert chirp_server.attrs["HTChirpEWMSPilotStatus"] == '"Tasking"'
    assert chirp_server.attrs["HTChirpEWMSPilotTasksTotal"] == "0"


def test_htchirp_is_left_out_without_a_chirp_config(tmp_path: Path) -> None:
    config = ReportingConfig(htchirp=True, job_event_log=tmp_path / "jel", cluster_id=1, proc_id=2)
    sinks = make_sinks(config, {"_CONDOR_CHIRP_CONFIG": str(tmp_path / "missing")})
    assert [type(s) for s in sinks] == [JobEventLogSink]
    (tmp_path / ".chirp.config").write_text("127.0.0.1 1 cookie\n")
    sinks = make_sinks(config, {"_CONDOR_CHIRP_CONFIG": str(tmp_path / ".chirp.config")})
    assert [type(s) for s in sinks] == [HTChirpSink, JobEventLogSink]
