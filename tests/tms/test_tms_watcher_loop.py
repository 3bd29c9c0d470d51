"""The watcher loop against an in-memory WMS: latency, only-changes, unmapped clusters, completion, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tms_fakes import DATA, FakeWMS, make_taskforce

from ewms_dev.processes import until
from ewms_wire.chirp import ChirpAttr, format_chirp
from ewms_wire.job_event_log import JobEventLogWriter
from tms.watcher.cluster_map import TaskforceRef
from tms.watcher.loop import Watcher
from tms.wms_client import WMSClient


@contextlib.asynccontextmanager
async def running_watcher(config: Any) -> AsyncIterator[Watcher]:
    wms = WMSClient.from_config(config)
    watcher = Watcher(config, wms)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        yield watcher
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await wms.close()


def submitted_taskforce(wms: FakeWMS, uuid: str, cluster_id: int, log: Path, n_workers: int) -> None:
    wms.add(
        make_taskforce(
            uuid, n_workers=n_workers, cluster_id=cluster_id, job_event_log_fpath=str(log), phase="condor-submit"
        )
    )


def posted(wms: FakeWMS, uuid: str) -> list[dict]:
    return [
        body["compound_statuses_by_taskforce"][uuid]
        for _, body in wms.status_posts
        if uuid in (body.get("compound_statuses_by_taskforce") or {})
    ]


async def test_status_changes_reach_the_wms(fake_wms: FakeWMS, make_config) -> None:
    config = make_config(fake_wms.url, watcher_interval=0.25)
    log = config.job_event_log_dir / "2026-03-02.tms.jel"
    submitted_taskforce(fake_wms, "TF-A", 7, log, 2)
    submitted_taskforce(fake_wms, "TF-B", 8, log, 1)
    writer = JobEventLogWriter(log)
    for proc in (0, 1):
        writer.submit(7, proc)
    writer.submit(8, 0)
    async with running_watcher(config):
        await until(lambda: len(fake_wms.status_posts) == 1)
        first = fake_wms.status_posts[0][1]["compound_statuses_by_taskforce"]
        assert first == {"TF-A": {"IDLE": {"null": 2}}, "TF-B": {"IDLE": {"null": 1}}}
        for step in range(3):  # each change is posted (until's bound is liveness; how fast: bench freshness)
            if step == 0:
                writer.execute(7, 0)
            else:
                writer.generic(7, 0, format_chirp(ChirpAttr.STATUS, ["Started", "Tasking", "Done"][step]))
            expected = step + 2
            await until(lambda: len(fake_wms.status_posts) == expected)  # noqa: B023
        # only the changed taskforce is sent, and only its changed part
        assert all(set(body["compound_statuses_by_taskforce"]) == {"TF-A"} for _, body in fake_wms.status_posts[1:])
        assert posted(fake_wms, "TF-A")[-1] == {"IDLE": {"null": 1}, "RUNNING": {"Done": 1}}
        writer.generic(7, 0, format_chirp(ChirpAttr.LAST_UPDATED_TIMESTAMP, 12345))  # not reported: no post
        await asyncio.sleep(0.6)
        assert len(fake_wms.status_posts) == 4
        writer.generic(7, 0, format_chirp(ChirpAttr.ERROR, "task failed (exit code 2): nope"))
        await until(lambda: len(fake_wms.status_posts) == 5)
        last = fake_wms.status_posts[-1][1]
        assert last == {"top_task_errors_by_taskforce": {"TF-A": {"task failed (exit code 2): nope": 1}}}
        assert fake_wms.taskforces["TF-A"]["top_task_errors"] == {"task failed (exit code 2): nope": 1}


async def test_condor_complete_once_all_jobs_left(fake_wms: FakeWMS, make_config) -> None:
    config = make_config(fake_wms.url)
    log = config.job_event_log_dir / "c.tms.jel"
    submitted_taskforce(fake_wms, "TF-C", 3, log, 2)
    writer = JobEventLogWriter(log)
    writer.submit(3, 0)
    writer.submit(3, 1)
    async with running_watcher(config):
        writer.terminated(3, 0, 0)
        await until(lambda: posted(fake_wms, "TF-C")[-1:] == [{"COMPLETED": {"null": 1}, "IDLE": {"null": 1}}])
        assert fake_wms.taskforces["TF-C"]["phase"] == "condor-submit"
        before = time.time()
        writer.aborted(3, 1, "via condor_rm")
        await until(lambda: fake_wms.taskforces["TF-C"]["phase"] == "condor-complete")
        assert fake_wms.taskforces["TF-C"]["compound_statuses"] == {"COMPLETED": {"null": 1}, "REMOVED": {"null": 1}}
        assert abs(fake_wms.taskforces["TF-C"]["condor_complete_ts"] - before) <= 2
        await asyncio.sleep(0.4)
        assert len(fake_wms.calls_to("condor-complete")) == 1
        # final statuses went out before the completion
        kinds = [c[1].split("/")[3] for c in fake_wms.calls if "statuses" in c[1] or "condor-complete" in c[1]]
        assert kinds[-1] == "condor-complete"


async def test_unmapped_clusters_are_looked_up_with_backoff_then_ignored(fake_wms: FakeWMS, make_config) -> None:
    config = make_config(fake_wms.url, unmapped_cluster_give_up=1.5)
    log = config.job_event_log_dir / "shared.tms.jel"
    writer = JobEventLogWriter(log)
    writer.submit(900, 0)  # another user's job in the shared log
    writer.submit(901, 0)  # ours, confirmed to the WMS a little later
    async with running_watcher(config) as watcher:
        await asyncio.sleep(0.5)
        submitted_taskforce(fake_wms, "TF-late", 901, log, 1)
        await until(lambda: posted(fake_wms, "TF-late") == [{"IDLE": {"null": 1}}])
        await asyncio.sleep(2.0)
        watched = watcher.logs[log]
        assert 900 in watched.map.foreign and 900 not in watched.clusters
        queries = len(fake_wms.calls_to("/query/taskforces"))
        assert queries <= 6, queries  # ~0, 0.5, 1, 2 s: not once per 0.1 s pass
        writer.execute(900, 0)
        writer.execute(901, 0)
        await until(lambda: posted(fake_wms, "TF-late")[-1] == {"RUNNING": {"null": 1}})
        assert len(fake_wms.calls_to("/query/taskforces")) == queries


async def test_registered_clusters_need_no_lookup(fake_wms: FakeWMS, make_config) -> None:
    config = make_config(fake_wms.url)
    log = config.job_event_log_dir / "reg.tms.jel"
    fake_wms.add(make_taskforce("TF-R", phase="condor-submit"))  # not yet confirmed with a cluster id
    writer = JobEventLogWriter(log)
    writer.submit(42, 0)
    async with running_watcher(config) as watcher:
        watcher.register_cluster(log, 42, TaskforceRef("TF-R", 1))
        await until(lambda: posted(fake_wms, "TF-R") == [{"IDLE": {"null": 1}}])


async def test_restart_reports_the_same_totals_once(fake_wms: FakeWMS, make_config) -> None:
    config = make_config(fake_wms.url)
    log = config.job_event_log_dir / "2026-03-02.tms.jel"
    log.parent.mkdir(parents=True)
    shutil.copy(DATA / "two_taskforces.tms.jel", log)
    submitted_taskforce(fake_wms, "TF-A", 101, log, 4)
    submitted_taskforce(fake_wms, "TF-B", 102, log, 3)
    async with running_watcher(config):
        await until(lambda: fake_wms.taskforces["TF-B"]["phase"] == "condor-complete")
    first = {uuid: (tf["compound_statuses"], tf["top_task_errors"]) for uuid, tf in fake_wms.taskforces.items()}
    assert len(posted(fake_wms, "TF-A")) == 1  # a log read from the top reports its final state only
    assert fake_wms.taskforces["TF-A"]["phase"] == "condor-submit"
    n_posts = len(fake_wms.status_posts)
    async with running_watcher(config):  # a restarted TMS reads everything again
        await until(lambda: len(fake_wms.status_posts) > n_posts)
        await asyncio.sleep(0.3)
    again = {uuid: (tf["compound_statuses"], tf["top_task_errors"]) for uuid, tf in fake_wms.taskforces.items()}
    assert again == first
    assert len(fake_wms.calls_to("condor-complete")) == 1  # already condor-complete: not reported again


async def test_wms_outage_and_unknown_taskforces(fake_wms: FakeWMS, make_config) -> None:
    config = make_config(fake_wms.url)
    log = config.job_event_log_dir / "o.tms.jel"
    submitted_taskforce(fake_wms, "TF-O", 5, log, 1)
    writer = JobEventLogWriter(log)
    writer.submit(5, 0)
    writer.submit(6, 0)
    async with running_watcher(config) as watcher:
        watcher.register_cluster(log, 6, TaskforceRef("TF-gone", 1))  # the WMS does not know this one
        await until(lambda: log in watcher.logs)
        fake_wms.fail_next.extend([503, 503, 503, 503])
        await until(lambda: fake_wms.taskforces["TF-O"]["compound_statuses"] == {"IDLE": {"null": 1}})
        n_posts = len(fake_wms.status_posts)
        await asyncio.sleep(0.5)
        assert len(fake_wms.status_posts) == n_posts  # a 207 for the unknown one is not retried every pass


async def test_archived_log_is_dropped(fake_wms: FakeWMS, make_config) -> None:
    config = make_config(fake_wms.url)
    log = config.job_event_log_dir / "old.tms.jel"
    JobEventLogWriter(log).submit(1, 0)
    async with running_watcher(config) as watcher:
        await until(lambda: log in watcher.logs)
        log.unlink()
        await until(lambda: log not in watcher.logs)


async def test_a_flooded_log_does_not_starve_the_others(fake_wms: FakeWMS, make_config, monkeypatch) -> None:
    monkeypatch.setattr("tms.watcher.loop.PASS_READ_BUDGET", 0.0)
    monkeypatch.setattr("tms.watcher.loop.CHUNK_EVENTS", 100)
    config = make_config(fake_wms.url)
    big = config.job_event_log_dir / "a-big.tms.jel"
    small = config.job_event_log_dir / "b-small.tms.jel"
    writer = JobEventLogWriter(big)
    writer.submit(1, 0)
    writer.execute(1, 0)  # already caught up once: a steady-state flood follows
    JobEventLogWriter(small).submit(2, 0)
    submitted_taskforce(fake_wms, "TF-big", 1, big, 1)
    submitted_taskforce(fake_wms, "TF-small", 2, small, 1)
    wms = WMSClient.from_config(config)
    watcher = Watcher(config, wms)
    assert not await watcher.run_once()
    with big.open("a") as f:
        for n in range(2000):
            f.write(f"008 (001.000.000) 2026-03-02 10:00:00 HTChirpEWMSPilotTasksTotal: {n}\n...\n")
    writer.generic(1, 0, format_chirp(ChirpAttr.STATUS, "Tasking"))
    JobEventLogWriter(small).execute(2, 0)
    assert await watcher.run_once()  # the big log still has a backlog ...
    assert posted(fake_wms, "TF-small")[-1] == {"RUNNING": {"null": 1}}  # ... but the small one was read
    while await watcher.run_once():
        pass
    assert posted(fake_wms, "TF-big")[-1] == {"RUNNING": {"Tasking": 1}}
    assert watcher.logs[big].clusters[1].jobs[0].tasks_total == 1999
    await wms.close()


async def test_loops_survive_their_own_errors(caplog) -> None:
    from tms.daemon import poll_loop

    calls = []
    stop = asyncio.Event()

    async def step() -> bool:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise RuntimeError("transient trouble")
        if len(calls) == 4:
            stop.set()
        return False

    await asyncio.wait_for(poll_loop("test loop", step, stop, idle_wait=0.05, error_wait=0.1), 10)
    assert len(calls) == 4
    assert calls[1] - calls[0] >= 0.09  # paused after an error
    assert caplog.text.count("test loop failed; trying again") == 2
