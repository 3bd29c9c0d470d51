"""The benchmark harness: only successful calls count, a failed request makes a result MISSED, a missing or crashed
benchmark fails ``bench/run``, and the floor of rest-query and query-first-page sends the database exactly the
``find`` the handler sends."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient, monitoring

from bench import common, runner
from bench.bench_rest_query import QUERY, driver_page, floor_store
from wms.auth import Role


@pytest.fixture
def no_failed_requests() -> Iterator[None]:
    common.FAILED_REQUESTS.clear()
    yield
    common.FAILED_REQUESTS.clear()


async def test_run_load_counts_only_successful_calls(no_failed_requests: None) -> None:
    async def op(n: int) -> None:
        if n % 3 == 0:
            raise common.HTTPFailure(f"503: call {n}")

    load = await common.run_load(op, 3, 600, max_ops=30)
    assert (load.ops, load.errors, len(load.latencies)) == (20, 10, 20)
    assert load.summary()["ops"] == 20 and load.summary()["errors"] == 10
    assert sum(common.FAILED_REQUESTS.values()) == 10


def test_a_failed_request_makes_the_result_missed(
    no_failed_requests: None, capsys: pytest.CaptureFixture[str]
) -> None:
    common.emit("x", {"req/s": 10.0}, {"req/s": 10.0}, "rate >= 0.5 x floor", True)
    assert json.loads(capsys.readouterr().out)["met"] is True
    common.FAILED_REQUESTS["HTTPFailure: 500: boom"] += 2
    common.emit("x", {"req/s": 10.0}, {"req/s": 10.0}, "rate >= 0.5 x floor", True)
    result = json.loads(capsys.readouterr().out)
    assert result["met"] is False and result["figures"]["failed requests"] == 2
    assert result["notes"].startswith("MISSED: 2 request(s) failed (2 x HTTPFailure: 500: boom)")


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (("bench/bench_nowhere.py",), "exit 2"),  # a missing script
        (("-m", "bench.bench_nowhere"), "exit 1"),  # a missing module
        (("-c", "import sys; print('{}'); sys.exit(3)"), "exit 3"),  # a crash
        (("-c", "print('not json')"), "output not understood"),
    ],
)
def test_a_missing_or_crashing_benchmark_fails_the_run(
    argv: tuple[str, ...], why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "RESULTS", tmp_path)
    monkeypatch.setattr(runner, "QUIET_WAIT_MAX", 0.0)  # the suite keeps the machine busy
    monkeypatch.setattr(runner, "BENCHES", (runner.Bench("broken", argv),))
    monkeypatch.setattr(sys, "argv", ["bench/run", "broken"])
    assert runner.main() == 1
    result = json.loads((tmp_path / "latest.json").read_text())["results"][0]
    assert result["status"] == "failed" and why in result["notes"], result
    assert "| broken | FAILED |" in (tmp_path / "latest.md").read_text()


class FindCommands(monitoring.CommandListener):
    """Records the ``find`` commands on taskforces in database ``db`` of every client created after it is registered,
    while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self.db = ""
        self.finds: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.on and event.database_name == self.db and event.command_name == "find" and (
            event.command["find"] == "taskforces"
        ):
            keys = ("find", "filter", "projection", "sort", "limit", "skip", "batchSize", "hint")
            self.finds.append({k: event.command[k] for k in keys if k in event.command})

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_the_rest_query_floor_sends_the_handlers_find(
    start_wms: Callable[..., Awaitable[Any]], make_token: Callable[..., str]
) -> None:
    listener = FindCommands()
    monitoring.register(listener)  # global: it sees the WMS's client, created below
    under_test = await start_wms(WMS_RUN_DAEMONS="false")  # only the handler reads taskforces
    db = under_test.wms.store.db
    listener.db = db.name
    await db.taskforces.insert_many(list(common.taskforce_docs(200)))
    headers = {"Authorization": f"Bearer {make_token(Role.TMS, 'bench-tms')}"}
    async with httpx.AsyncClient(base_url=under_test.url, headers=headers) as http:
        listener.on = True
        first = (await http.post("/v0/query/taskforces", json={"query": QUERY, "limit": 5})).json()
        after = first["next_after"]
        await http.post("/v0/query/taskforces", json={"query": QUERY, "limit": 5, "after": after})
        handler, listener.finds = listener.finds, []
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(under_test.config.mongodb_uri)
    try:
        floor = await floor_store(client, under_test.config.db_name)
        assert await driver_page(floor, 5, None) == (5, after)
        await driver_page(floor, 5, after)
    finally:
        listener.on = False
        await client.close()
    assert len(handler) == 2 and floor.id_key in handler[1]["filter"] and handler[0]["sort"] == {floor.id_key: 1}
    assert listener.finds == handler


def test_each_benchmark_waits_for_idle_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    # (idle, total) ticks: a busy second (50 % idle), then a quiet one (95 % idle)
    samples = iter([(0, 0), (50, 100), (50, 100), (145, 200)])
    monkeypatch.setattr(runner, "cpu_times", lambda: next(samples))
    monkeypatch.setattr(runner.time, "sleep", lambda _s: None)
    runner.wait_for_quiet()
    assert next(samples, None) is None  # it looked until the quiet second, and no further


def test_cpu_by_kind_counts_a_process_and_its_reaped_children(tmp_path: Path) -> None:
    """The pipeline's CPU breakdown: a running process is found by its command line, with the CPU of the children
    it has waited for (a pilot's task processes); other processes are not counted."""
    marker = f"cpu-probe-{tmp_path.name}"
    spin = "import time\nwhile time.process_time() < 0.3: pass"  # a child that burns 0.3 s of CPU
    done = tmp_path / "done"
    parent = (
        f"import subprocess, sys, time\nsubprocess.run([sys.executable, '-c', {spin!r}])\n"
        f"open({str(done)!r}, 'w')\ntime.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent, marker])
    try:
        deadline = time.monotonic() + 60  # liveness bound, not a timing check
        while not done.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        used = common.cpu_by_kind({"probe": marker, "nothing": f"no-such-command-{marker}x"})
        assert used["probe"] >= 0.25  # 0.3 s, counted in clock ticks
        assert used["nothing"] == 0.0
    finally:
        proc.kill()
        proc.wait()
