"""Output tails of jobs shipped to the WMS: reading tails, batches, retries, once per job end, running jobs' growing
tails, end to end."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import one_task_workflow
from test_tms_with_real_wms import running_tms, tms_config, wait_for

from ewms_client import RetryPolicy, WMSError
from ewms_dev.processes import until
from ewms_wire.chirp import ChirpAttr, format_chirp
from ewms_wire.job_event_log import JobEventLogWriter
from tms.config import ConfigError, TMSConfig
from tms.submit_description import taskforce_dir
from tms.watcher import job_logs
from tms.watcher.cluster_map import TaskforceRef
from tms.watcher.job_logs import output_files, read_tail
from tms.watcher.loop import Watcher
from tms.wms_client import WMSClient
from wms.auth import Role

# a stand-in pilot: 500 numbered lines on stdout and stderr, then ok (exit 0) or fail (chirped error, exit 3)
PILOT = """
import os, sys
from ewms_wire.job_event_log import JobEventLogWriter
from ewms_wire.chirp import ChirpAttr, format_chirp
log = JobEventLogWriter(os.environ["_EWMS_PILOT_JOB_EVENT_LOG"])
cluster, proc = int(os.environ["_EWMS_PILOT_CLUSTER_ID"]), int(os.environ["_EWMS_PILOT_PROC_ID"])
log.generic(cluster, proc, format_chirp(ChirpAttr.STATUS, "Tasking"))
for i in range(500):
    print(f"out line {i:04d}")
    print(f"err line {i:04d}", file=sys.stderr)
sys.stdout.flush()
if os.environ.get("EWMS_PILOT_TASK_ARGS") == "fail":
    log.generic(cluster, proc, format_chirp(ChirpAttr.ERROR, "task failed (exit code 3): boom\\nlast words"))
    log.generic(cluster, proc, format_chirp(ChirpAttr.STATUS, "FatalError"))
    sys.exit(3)
log.generic(cluster, proc, format_chirp(ChirpAttr.STATUS, "Done"))
"""


class TimedWriter(JobEventLogWriter):
    """Writes events stamped ``when`` (epoch seconds) instead of now."""

    when = time.time()

    def _append(self, text: str) -> None:
        head, sep, rest = text.partition(") ")
        super()._append(f"{head}{sep}{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.when))}{rest[19:]}")


class StubWMS:
    """The watcher's WMS calls in memory; ``send_job_logs`` records, or fails as told."""

    def __init__(self) -> None:
        self.log_posts: list[tuple[str, list[dict[str, Any]]]] = []
        self.failures: list[Exception] = []  # raised by the next logs posts, in turn

    async def query_taskforces(self, query: Any, projection: Any) -> list[dict[str, Any]]:
        return []

    async def send_statuses(self, compound: Any, errors: Any, counters: Any = None) -> list[dict[str, Any]]:
        return []

    async def confirm_condor_complete(self, uuid: str, ts: int) -> None:
        pass

    async def send_job_logs(self, uuid: str, jobs: list[dict[str, Any]]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.log_posts.append((uuid, list(jobs)))

    def shipped(self) -> dict[str, dict[str, Any]]:
        """Latest record per job id."""
        return {job["job_id"]: job for _, jobs in self.log_posts for job in jobs}


def stub_watcher(config: TMSConfig, log: Path, clusters: dict[int, str]) -> tuple[Watcher, StubWMS]:
    wms = StubWMS()
    watcher = Watcher(config, wms)  # type: ignore[arg-type]
    for cluster, uuid in clusters.items():
        watcher.register_cluster(log, cluster, TaskforceRef(uuid, None, "condor-complete"))
    return watcher, wms


async def passes(watcher: Watcher, n: int = 1) -> None:
    for _ in range(n):
        await watcher.run_once()


async def passes_until_shipped(watcher: Watcher, wms: StubWMS, n_jobs: int) -> list[list[tuple[str, int]]]:
    """Passes until ``n_jobs`` distinct jobs were shipped (at most 100 passes); the calls of each pass that made
    any, as (taskforce, number of jobs)."""
    calls: list[list[tuple[str, int]]] = []
    for _ in range(100):
        before = len(wms.log_posts)
        await watcher.run_once()
        if len(wms.log_posts) > before:
            calls.append([(uuid, len(jobs)) for uuid, jobs in wms.log_posts[before:]])
        if len(wms.shipped()) >= n_jobs:
            return calls
    raise AssertionError(f"{len(wms.shipped())} of {n_jobs} jobs shipped after 100 passes")


def write_output(config: TMSConfig, uuid: str, cluster: int, name: str, text: str, age: float = 60.0) -> Path:
    """A job output file under the taskforce dir, last modified ``age`` seconds ago."""
    path = taskforce_dir(config, uuid) / f"cluster-{cluster}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (time.time() - age, time.time() - age))
    return path


# -- pieces ------------------------------------------------------------------------------------------------------------


def test_read_tail_limits_and_decoding(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_bytes(b"x" * 100 + "é".encode() * 10)
    assert read_tail(path, 15) == "é" * 7  # a character cut at the start is dropped
    assert read_tail(path, 1000) == "x" * 100 + "é" * 10
    path.write_bytes(b"ok\xff\xfe done")
    assert read_tail(path, 100) == "ok\ufffd\ufffd done"
    path.write_bytes(b"y" * 70_000)
    assert len(read_tail(path, 65_536)) == 65_536
    assert read_tail(tmp_path / "missing", 100) == read_tail(None, 100) == read_tail(path, 0) == ""


def test_output_files_of_both_layouts(tmp_path: Path) -> None:
    names = {"0.out", "0.err", "job-1"}
    assert output_files(tmp_path, names, 0) == (tmp_path / "0.out", tmp_path / "0.err")
    assert output_files(tmp_path, names, 1) == (tmp_path / "job-1/_condor_stdout", tmp_path / "job-1/_condor_stderr")
    assert output_files(tmp_path, names, 2) == (None, None)


def test_tail_size_setting() -> None:
    env = {"EWMS_ADDRESS": "http://x", "EWMS_TOKEN": "t"}
    assert TMSConfig.from_env(env).log_tail_bytes == 16384
    assert TMSConfig.from_env({**env, "TMS_LOG_TAIL_BYTES": "4096"}).log_tail_bytes == 4096
    with pytest.raises(ConfigError, match="TMS_LOG_TAIL_BYTES"):
        TMSConfig.from_env({**env, "TMS_LOG_TAIL_BYTES": "65537"})


# -- the watcher with a stub WMS ---------------------------------------------------------------------------------------


async def test_records_of_ended_jobs(make_config) -> None:
    config = make_config(log_tail_bytes=64)
    log = config.job_event_log_dir / "a.tms.jel"
    writer = TimedWriter(log)
    writer.when = ended = time.time() - 30
    for proc in range(4):
        writer.submit(7, proc)
        writer.execute(7, proc)
    writer.generic(7, 0, format_chirp(ChirpAttr.ERROR, "task failed (exit code 2): nope"))
    writer.terminated(7, 0, 2)
    writer.terminated(7, 1, 0)
    writer.held(7, 2, "Job has gone over memory limit", 34)
    writer.aborted(7, 3, "via condor_rm")
    write_output(config, "TF-A", 7, "0.err", "".join(f"err {i:03d}\n" for i in range(100)))
    write_output(config, "TF-A", 7, "0.out", "hello\n")
    write_output(config, "TF-A", 7, "job-1/_condor_stdout", "done\n")
    watcher, wms = stub_watcher(config, log, {7: "TF-A"})
    await passes(watcher)
    assert [uuid for uuid, _ in wms.log_posts] == ["TF-A"]
    jobs = wms.shipped()
    stamp = float(int(ended))
    assert jobs["7.0"] == {
        "job_id": "7.0",
        "stdout_tail": "hello\n",
        "stderr_tail": "".join(f"err {i:03d}\n" for i in range(92, 100)),  # the last 64 bytes
        "task_error": "task failed (exit code 2): nope",
        "exit_code": 2,
        "ended_ts": stamp,
    }
    assert (jobs["7.1"]["stdout_tail"], jobs["7.1"]["stderr_tail"], jobs["7.1"]["exit_code"]) == ("done\n", "", 0)
    for held_or_removed in ("7.2", "7.3"):
        assert jobs[held_or_removed] == {
            "job_id": held_or_removed,
            "stdout_tail": "",
            "stderr_tail": "",
            "task_error": "",
            "exit_code": None,
            "ended_ts": stamp,
        }
    await passes(watcher, 2)
    assert len(wms.log_posts) == 1


async def test_batches_per_taskforce_and_once_per_job(make_config) -> None:
    config = make_config()
    log = config.job_event_log_dir / "b.tms.jel"
    writer = JobEventLogWriter(log)
    for proc in range(450):
        writer.terminated(101, proc, 0)
    for proc in range(3):
        writer.terminated(102, proc, 1)
    watcher, wms = stub_watcher(config, log, {101: "TF-A", 102: "TF-B"})
    calls = await passes_until_shipped(watcher, wms, 453)
    # one call per taskforce and pass, at most BATCH_MAX_JOBS jobs each, every job once (a pass reads what its time
    # budget allows, so on a loaded machine the batches may be smaller, never larger or more)
    assert all(len({uuid for uuid, _ in calls_of_pass}) == len(calls_of_pass) for calls_of_pass in calls), calls
    sizes = [n for calls_of_pass in calls for _, n in calls_of_pass]
    assert max(sizes) <= job_logs.BATCH_MAX_JOBS and len(calls) >= 3  # 450 jobs of TF-A need three calls at least
    assert sum(sizes) == 453 and len(wms.shipped()) == 453
    posts = len(wms.log_posts)

    # the log read again from the top (replaced): nothing is read or sent again
    copy = log.with_suffix(".copy")
    shutil.copy(log, copy)
    os.replace(copy, log)
    await passes(watcher, 3)
    assert watcher.logs[log].reader.n_rotations == 1 and len(wms.log_posts) == posts

    # a restarted watcher ships every ended job once more (the WMS replaces them)
    again, wms_again = stub_watcher(config, log, {101: "TF-A", 102: "TF-B"})
    await passes_until_shipped(again, wms_again, 453)
    await passes(again, 2)
    assert sum(len(jobs) for _, jobs in wms_again.log_posts) == 453 and len(wms_again.shipped()) == 453


async def test_a_job_that_ends_again_is_shipped_again(make_config) -> None:
    config = make_config()
    log = config.job_event_log_dir / "c.tms.jel"
    writer = TimedWriter(log)
    writer.when = time.time() - 60
    writer.execute(5, 0)
    writer.held(5, 0, "The job exceeded allowed execute duration", 47)
    watcher, wms = stub_watcher(config, log, {5: "TF-C"})
    await passes(watcher)
    assert wms.shipped()["5.0"]["exit_code"] is None
    writer.when += 10
    writer.released(5, 0)
    writer.execute(5, 0)
    await passes(watcher, 2)
    assert len(wms.log_posts) == 1  # running again: nothing new
    writer.terminated(5, 0, 0)
    await passes(watcher)
    assert len(wms.log_posts) == 2 and wms.shipped()["5.0"]["exit_code"] == 0


async def test_files_still_being_written_are_read_once_unchanged(make_config, monkeypatch) -> None:
    # "written lately" and the patience are wall-clock windows; made wide so a slow machine cannot outlast them
    monkeypatch.setattr(job_logs, "SETTLE_SECONDS", 3600.0)
    monkeypatch.setattr(job_logs, "SETTLE_PATIENCE", 3600.0)
    config = make_config()
    log = config.job_event_log_dir / "d.tms.jel"
    err = write_output(config, "TF-D", 9, "0.err", "first\n", age=0)
    JobEventLogWriter(log).terminated(9, 0, 1)
    watcher, wms = stub_watcher(config, log, {9: "TF-D"})
    await passes(watcher)
    assert wms.log_posts == []  # written just now: wait
    with err.open("a") as f:
        f.write("last\n")
    await passes(watcher)
    assert wms.log_posts == []  # still changing
    await passes(watcher)
    assert wms.shipped()["9.0"]["stderr_tail"] == "first\nlast\n"


async def test_failed_posts_are_retried_and_the_queue_is_bounded(make_config, monkeypatch, caplog) -> None:
    monkeypatch.setattr(job_logs, "QUEUE_MAX_JOBS", 5)
    config = make_config()
    log = config.job_event_log_dir / "e.tms.jel"
    writer = JobEventLogWriter(log)
    for proc in range(8):
        writer.terminated(11, proc, 0)
    watcher, wms = stub_watcher(config, log, {11: "TF-E"})
    wms.failures = [WMSError(None, "Unreachable", "WMS away"), WMSError(413, "Content Too Large", "too large")]
    with caplog.at_level(logging.WARNING):
        await passes(watcher)  # away: kept, the 3 oldest dropped
        await passes(watcher)  # too large: kept, smaller batches from now on
    assert wms.log_posts == []
    assert "dropped the 3 oldest job logs" in caplog.text and "too large" in caplog.text
    await passes(watcher)
    assert sorted(wms.shipped()) == [f"11.{proc}" for proc in range(3, 8)]

    writer.terminated(12, 0, 0)
    watcher.register_cluster(log, 12, TaskforceRef("TF-GONE", None, "condor-complete"))
    wms.failures = [WMSError(404, "Not Found", "no taskforce found")]
    await passes(watcher, 2)  # refused: dropped, not repeated
    assert "12.0" not in wms.shipped() and watcher.job_logs.pending == 0


# -- against the real WMS ----------------------------------------------------------------------------------------------


async def job_logs_of(api: Any, uuid: str, n_jobs: int, within: float = 10.0) -> list[dict[str, Any]]:
    body = await until(
        lambda: api.ok("GET", f"/v0/taskforces/{uuid}/logs"), lambda b: len(b["jobs"]) >= n_jobs, within, "job logs"
    )
    return list(body["jobs"])


async def test_failed_and_successful_jobs_end_to_end(api, wms_server, make_token, make_config, tmp_path) -> None:
    """Local-backend jobs: the failed one's stderr tail, error and exit code, the successful one's stdout tail."""
    pilot = tmp_path / "stand_in_pilot.py"  # (not pilot.py: it would hide the pilot package)
    pilot.write_text(PILOT)
    config = tms_config(
        make_config,
        wms_server,
        make_token,
        local_pilot_command=(sys.executable, str(pilot)),
        log_tail_bytes=1024,
        local_pilot_user="",  # as this user: the stand-in lives in tmp_path, which the pilot account cannot read
    )
    failing = one_task_workflow("fail", 1)  # output in cluster-<C>/0.out|.err
    succeeding = one_task_workflow("ok", 1)  # output in cluster-<C>/job-0/_condor_stdout|stderr
    succeeding["tasks"][0]["worker_config"]["do_transfer_worker_stdouterr"] = False
    created = [await api.ok("POST", "/v0/workflows", request) for request in (failing, succeeding)]
    uuids = [c["taskforces"][0]["taskforce_uuid"] for c in created]
    async with running_tms(config):
        done = [await wait_for(api, uuid, lambda tf: tf["phase"] == "condor-complete") for uuid in uuids]
        logs = [await job_logs_of(api, uuid, 1) for uuid in uuids]
    (failed,), (succeeded,) = logs
    assert failed["job_id"] == f"{done[0]['cluster_id']}.0" and failed["exit_code"] == 3
    assert failed["stderr_tail"] == "".join(f"err line {i:04d}\n" for i in range(500))[-1024:]
    assert failed["task_error"] == "task failed (exit code 3): boom\nlast words"
    assert succeeded["job_id"] == f"{done[1]['cluster_id']}.0" and succeeded["exit_code"] == 0
    assert succeeded["stdout_tail"].endswith("out line 0499\n") and len(succeeded["stdout_tail"]) == 1024
    assert succeeded["task_error"] == "" and abs(succeeded["ended_ts"] - time.time()) < 60


# a stand-in pilot that prints a line, then waits for the file named by its task args before it finishes
WAITING_PILOT = """
import os, sys, time
print("started", flush=True)
while not os.path.exists(os.environ["EWMS_PILOT_TASK_ARGS"]):
    time.sleep(0.05)
print("finished", flush=True)
"""


async def test_a_running_jobs_tail_then_its_end(api, wms_server, make_token, make_config, tmp_path) -> None:
    """A local-backend job's output reaches the WMS while it runs; its end's record then replaces it."""
    pilot = tmp_path / "waiting_pilot.py"
    pilot.write_text(WAITING_PILOT)
    release = tmp_path / "release"
    config = tms_config(
        make_config,
        wms_server,
        make_token,
        local_pilot_command=(sys.executable, str(pilot)),
        log_running_interval=0.2,
        local_pilot_user="",
    )
    request = one_task_workflow(str(release), 1)
    request["tasks"][0]["worker_config"]["do_transfer_worker_stdouterr"] = False
    uuid = (await api.ok("POST", "/v0/workflows", request))["taskforces"][0]["taskforce_uuid"]
    async with running_tms(config):
        body = await until(
            lambda: api.ok("GET", f"/v0/taskforces/{uuid}/logs"),
            lambda b: [(j["stdout_tail"], j["ended_ts"]) for j in b["jobs"]] == [("started\n", None)],
            30,  # a generous liveness bound (pilot start, watcher pass, shipment), not a timing
            "the running job's tail",
        )
        assert body["jobs"][0]["exit_code"] is None
        release.touch()
        await wait_for(api, uuid, lambda tf: tf["phase"] == "condor-complete", 30)
        ended = await until(
            lambda: api.ok("GET", f"/v0/taskforces/{uuid}/logs"),
            lambda b: b["jobs"][0]["ended_ts"] is not None,
            30,
            "the job's end",
        )
    assert ended["jobs"][0]["stdout_tail"] == "started\nfinished\n" and ended["jobs"][0]["exit_code"] == 0


class FlakyTransport(httpx.AsyncHTTPTransport):
    """Answers the first ``failures`` logs posts with 503 itself; passes everything else to the WMS."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "/tms/logs/" in request.url.path and self.failures:
            self.failures -= 1
            return httpx.Response(503, json={"detail": "briefly unavailable"})
        return await super().handle_async_request(request)


async def test_a_failed_logs_post_is_retried_next_pass(api, wms_server, make_token, make_config) -> None:
    """A hand-written log against the real WMS: the first logs post fails, the next pass delivers."""
    config = tms_config(make_config, wms_server, make_token, log_tail_bytes=100)
    created = await api.ok("POST", "/v0/workflows", one_task_workflow("fail", 1))
    uuid = created["taskforces"][0]["taskforce_uuid"]
    log = config.job_event_log_dir / "f.tms.jel"
    writer = JobEventLogWriter(log)
    writer.execute(3001, 0)
    writer.generic(3001, 0, format_chirp(ChirpAttr.ERROR, "task failed (exit code 1): no input"))
    writer.terminated(3001, 0, 1)
    write_output(config, uuid, 3001, "0.err", "E" * 500 + "\nTraceback: the end\n")
    transport = FlakyTransport(failures=1)
    wms = WMSClient(wms_server.url, make_token(Role.TMS, "tms"), policy=RetryPolicy(retries=0), transport=transport)
    watcher = Watcher(config, wms)
    watcher.register_cluster(log, 3001, TaskforceRef(uuid, 1, "condor-complete"))
    try:
        await watcher.run_once()
        assert transport.failures == 0 and watcher.job_logs.pending == 1
        assert (await api.ok("GET", f"/v0/taskforces/{uuid}/logs"))["jobs"] == []
        await watcher.run_once()
        assert watcher.job_logs.pending == 0
    finally:
        await wms.close()
    (job,) = (await api.ok("GET", f"/v0/taskforces/{uuid}/logs"))["jobs"]
    assert job["job_id"] == "3001.0" and job["exit_code"] == 1
    assert job["stderr_tail"] == ("E" * 500 + "\nTraceback: the end\n")[-100:]
    assert job["task_error"] == "task failed (exit code 1): no input"


async def test_running_jobs_tails_grow_then_the_end_replaces_them(make_config) -> None:
    config = make_config(log_running_interval=1e-6)  # due on every pass
    log = config.job_event_log_dir / "r.tms.jel"
    writer = TimedWriter(log)
    writer.when = time.time() - 60
    writer.execute(8, 0)
    writer.execute(8, 1)  # runs without output files: nothing to ship
    write_output(config, "TF-R", 8, "job-0/_condor_stdout", "a\n")
    watcher, wms = stub_watcher(config, log, {8: "TF-R"})
    await passes(watcher)
    assert wms.shipped() == {
        "8.0": {"job_id": "8.0", "stdout_tail": "a\n", "stderr_tail": "", "task_error": "", "exit_code": None,
                "ended_ts": None},
    }  # fmt: skip
    await passes(watcher, 2)
    assert len(wms.log_posts) == 1  # unchanged files: not read or sent again
    write_output(config, "TF-R", 8, "job-0/_condor_stdout", "a\nb\n")
    await passes(watcher)
    assert len(wms.log_posts) == 2 and wms.shipped()["8.0"]["stdout_tail"] == "a\nb\n"

    writer.terminated(8, 0, 0)
    await passes(watcher)
    ended = wms.shipped()["8.0"]
    assert ended["ended_ts"] is not None and ended["exit_code"] == 0 and ended["stdout_tail"] == "a\nb\n"
    write_output(config, "TF-R", 8, "job-0/_condor_stdout", "a\nb\nlate\n")
    await passes(watcher, 2)
    assert wms.shipped()["8.0"] == ended  # an ended job is no longer shipped as running


async def test_running_tails_off(make_config) -> None:
    config = make_config(log_running_interval=0)
    log = config.job_event_log_dir / "s.tms.jel"
    JobEventLogWriter(log).execute(9, 0)
    write_output(config, "TF-S", 9, "job-0/_condor_stdout", "a\n")
    watcher, wms = stub_watcher(config, log, {9: "TF-S"})
    await passes(watcher, 2)
    assert wms.log_posts == []
