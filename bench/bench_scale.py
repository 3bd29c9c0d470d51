"""Benchmark scale: 1,000 active workflows of 10 taskforces each (10,000 taskforces, 100,000 jobs) watched by one TMS.

Seeding: the documents the WMS writes for ``POST /v0/workflows`` (its own ``plan_workflow`` and ``build_documents``,
10 tasks at location ``alpha`` per workflow), advanced as the MQ activator, launch control and a TMS submit would
(queues activated, phase ``condor-submit``, a cluster id and a job event log per taskforce), inserted through the
driver into the running WMS's database: 10,000 ``POST`` requests take too long on this machine, and the WMS keeps no
state but its database. Queue ids are made up (no vhosts: the workflows are past activation).
The synthetic job event logs (``*.tms.jel``, one per 1,000 taskforces) hold a submit and an execute event per job;
one real TMS (``python -m tms``, local backend, schedd ``alpha``) watches them and reports statuses to the WMS.
Figures, once the WMS shows every job running:
- freshness: a ``Tasking`` chirp appended for one job, then ``GET /v0/taskforces/{uuid}`` polled every 20 ms until
  it counts one more ``Tasking`` job (as ``bench_freshness``), while another task keeps appending chirps for other
  jobs (statuses stream) and 16 clients ``GET`` random taskforces (rest-get p50/p99 under this load); 5 s windows of
  these GETs alternate with windows of the same 16 clients sending the handler's own ``find`` straight to the
  database through the driver (reference, no target: the tail the database alone shows under the same load);
- launch: 10 workflows of 100 tasks at location ``beta`` (1,000 taskforces; no TMS serves ``beta``, so none is
  submitted) posted at once by 10 users, from the first POST sent to the last taskforce in ``pending-starter`` (by
  the ``phase_change_log`` times, as ``bench_launch``);
- peak RSS (VmHWM) of the WMS and the TMS processes.
No floor (absolute targets): freshness p95 < 1 s, launch < 5 s, WMS and TMS peak RSS each < 500 MB, rest-get p99 at
16 clients < 50 ms.

    .venv/bin/python -m bench.bench_scale [--workflows 1000] [--samples 40] [--launch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from bench.bench_freshness import count
from bench.bench_launch import reached
from bench.common import (
    CLUSTERS,
    LeanHTTP,
    check,
    emit,
    http_client,
    log,
    peak_rss_mb,
    percentile,
    run,
    run_load,
    wms_process,
)
from ewms_dev import processes
from ewms_dev.factories import task_request
from ewms_dev.service_env import tms_env
from ewms_wire.chirp import ChirpAttr, PilotStatus, format_chirp
from ewms_wire.job_event_log import EventType, JobEventLogWriter, format_event
from wms import schema
from wms.auth import Role
from wms.config import WMSConfig
from wms.database.store import MQ_ACTIVATED_TS, Store
from wms.lifecycle import Phase, log_entry
from wms.translation import build_documents, plan_workflow

TASKFORCES_PER_WORKFLOW = 10
JOBS_PER_TASKFORCE = 10
TASKFORCES_PER_LOG = 1000
CLIENTS = 16
POLL = 0.02
TIMEOUT = 30.0
TARGETS = {"freshness p95 s": 1.0, "launch s": 5.0, "WMS peak RSS MB": 500.0, "TMS peak RSS MB": 500.0,
           "rest-get p99 ms": 50.0}  # fmt: skip


def seed_documents(config: WMSConfig, n_workflows: int, log_dir: Path) -> tuple[list[Any], list[Any], list[Any]]:
    """Workflows, task directives and taskforces as the WMS writes them, advanced to ``condor-submit``."""
    workflows: list[Any] = []
    directives: list[Any] = []
    taskforces: list[Any] = []
    request = {
        "public_queue_aliases": ["in", "out"],
        "tasks": [task_request(["alpha"], ["in"], ["out"], n_workers=JOBS_PER_TASKFORCE)] * TASKFORCES_PER_WORKFLOW,
    }
    for w in range(n_workflows):
        plan = plan_workflow(request, f"scale-user-{w % 50:02d}", config)
        workflow, tds, tfs = build_documents(plan, {a: f"Q-{plan.workflow_id}-{a}" for a in plan.queue_aliases})
        workflow[MQ_ACTIVATED_TS] = time.time()
        for tf in tfs:
            n = len(taskforces)
            tf["phase_change_log"] += [
                log_entry(Phase.PRE_LAUNCH, True, "Workflow MQ Activator", "bench: activated"),
                log_entry(Phase.PENDING_STARTER, True, "Taskforce Launch Control", "bench: released"),
                log_entry(Phase.CONDOR_SUBMIT, True, "TMS", "bench: submitted"),
            ]
            tf.update(
                phase=str(Phase.CONDOR_SUBMIT),
                cluster_id=100_000 + n,
                job_event_log_fpath=str(log_dir / f"scale-{n // TASKFORCES_PER_LOG:03d}.tms.jel"),
                submit_dict={"request_cpus": 1, "+EWMS_TASKFORCE_UUID": tf["taskforce_uuid"]},
            )
            taskforces.append(tf)
        workflows.append(workflow)
        directives += tds
    return workflows, directives, taskforces


def write_logs(taskforces: list[dict[str, Any]]) -> int:
    """A submit and an execute event per job, in each taskforce's job event log; the number of events."""
    by_log: dict[str, list[str]] = {}
    stamp = time.time() - 3600
    for tf in taskforces:
        events = by_log.setdefault(tf["job_event_log_fpath"], [])
        for proc in range(JOBS_PER_TASKFORCE):
            cluster = tf["cluster_id"]
            events.append(format_event(EventType.SUBMIT, cluster, proc, "Job submitted from host: <a:1>", stamp))
            events.append(format_event(EventType.EXECUTE, cluster, proc, "Job executing on host: <a:1>", stamp))
    for path, events in by_log.items():
        Path(path).write_text("".join(events))
    return sum(len(e) for e in by_log.values())


def running(doc: dict[str, Any]) -> int:
    """Jobs the WMS shows as running (whatever their pilot status)."""
    return sum(doc["compound_statuses"].get("RUNNING", {}).values())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=40, help="freshness samples")
    parser.add_argument("--launch", type=int, default=1000, help="taskforces launched (multiple of 100)")
    parser.add_argument("--stream", type=float, default=200.0, help="background chirps per second")
    args = parser.parse_args()
    rng = random.Random(5)
    tasking = str(PilotStatus.TASKING)

    async with wms_process() as wms:
        config = WMSConfig.from_env(wms.env)
        log_dir = wms.work / "jel"
        log_dir.mkdir()
        workflows, directives, taskforces = seed_documents(config, args.workflows, log_dir)
        mongo = wms.client()
        store = Store(mongo, wms.db_name, schema.load(config.openapi_path))
        started = time.perf_counter()
        for i in range(0, len(taskforces), 2000):
            await store.insert_in_order(
                [
                    (store.taskforces, "TaskforceObject", taskforces[i : i + 2000]),
                    (store.task_directives, "TaskDirectiveObject", directives[i : i + 2000]),
                ]
            )
        await store.insert_many(store.workflows, "WorkflowObject", workflows)
        seed_seconds = time.perf_counter() - started
        n_events = write_logs(taskforces)
        log(f"seeded {len(workflows)} workflows, {len(taskforces)} taskforces in {seed_seconds:.1f}s; "
            f"{n_events} events in {len(list(log_dir.iterdir()))} logs")  # fmt: skip

        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("EWMS_", "TMS_", "JOB_EVENT"))},
            **tms_env(wms.url, wms.token(Role.TMS, "scale-tms"), CLUSTERS["alpha"], wms.work / "tms-state"),
            "JOB_EVENT_LOG_DIR": str(log_dir),
            "LOG_LEVEL": "WARNING",
        }
        tms = processes.spawn([sys.executable, "-m", "tms"], env, wms.work / "tms.log")
        try:
            async with http_client(wms.url, wms.token(Role.ADMIN, "scale-admin"), 4) as http:

                async def taskforce(uuid: str) -> dict[str, Any]:
                    got = await http.get(f"/v0/taskforces/{uuid}")
                    check(got)
                    return dict(got.json())

                started = time.perf_counter()
                last = taskforces[-1]["taskforce_uuid"]
                deadline = time.monotonic() + 600
                while running(await taskforce(last)) < JOBS_PER_TASKFORCE:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the TMS did not report every job running within 600 s")
                    await asyncio.sleep(0.5)
                catch_up = time.perf_counter() - started
                log(f"the WMS shows all {len(taskforces) * JOBS_PER_TASKFORCE} jobs running after {catch_up:.1f}s")

                fresh: list[float] = []
                stop = asyncio.Event()
                pairs = [(tf, p) for tf in taskforces for p in range(JOBS_PER_TASKFORCE)]
                rng.shuffle(pairs)
                probes = pairs[: args.samples]
                probed = {tf["taskforce_uuid"] for tf, _ in probes}  # their Tasking counts move only by the probes
                background = [(tf, p) for tf, p in pairs if tf["taskforce_uuid"] not in probed]

                async def stream() -> None:  # statuses keep streaming: chirps for other jobs
                    statuses = [str(s) for s in PilotStatus]
                    while not stop.is_set():
                        tf, proc = background[rng.randrange(len(background))]
                        chirp = format_chirp(ChirpAttr.STATUS, rng.choice(statuses))
                        JobEventLogWriter(tf["job_event_log_fpath"]).generic(tf["cluster_id"], proc, chirp)
                        await asyncio.sleep(1 / args.stream)

                async def freshness() -> None:
                    for tf, proc in probes:
                        await asyncio.sleep(rng.uniform(0.1, 0.6))  # do not phase-lock with the watcher
                        before = count((await taskforce(tf["taskforce_uuid"]))["compound_statuses"], tasking)
                        t0 = time.perf_counter()
                        chirp = format_chirp(ChirpAttr.STATUS, tasking)
                        JobEventLogWriter(tf["job_event_log_fpath"]).generic(tf["cluster_id"], proc, chirp)
                        while count((await taskforce(tf["taskforce_uuid"]))["compound_statuses"], tasking) <= before:
                            if time.perf_counter() - t0 > TIMEOUT:
                                raise TimeoutError(f"a status did not reach the WMS within {TIMEOUT}s")
                            await asyncio.sleep(POLL)
                        fresh.append(time.perf_counter() - t0)

                uuids = [tf["taskforce_uuid"] for tf in taskforces]
                streamer = asyncio.create_task(stream())
                async with LeanHTTP(wms.url, wms.token(Role.ADMIN, "scale-reader"), CLIENTS) as lean:

                    async def get(_n: int) -> None:
                        check(await lean.get(f"/v0/taskforces/{rng.choice(uuids)}"))

                    async def find(_n: int) -> None:  # what the handler sends, as the store's collection sends it
                        query = store.exact(store.taskforces, {"taskforce_uuid": rng.choice(uuids)})
                        if await mongo[wms.db_name].taskforces.find_one(query, {"_id": False}) is None:
                            raise RuntimeError("a seeded taskforce was not found")

                    sampling = asyncio.create_task(freshness())
                    loads, direct = [], []
                    while not sampling.done():
                        loads.append(await run_load(get, CLIENTS, 5.0, watch={"wms": wms.pid, "tms": tms.pid}))
                        if not sampling.done():
                            direct.append(await run_load(find, CLIENTS, 5.0))
                    await sampling
                stop.set()
                await streamer
                latencies = sorted(x for load in loads for x in load.latencies)
                rest = {"ops": len(latencies), "seconds": round(sum(load.seconds for load in loads), 1)}
                alone = sorted(x for load in direct for x in load.latencies)

                launch_s = await launch(wms, http, args.launch)
                wms_rss, tms_rss = peak_rss_mb(wms.pid), peak_rss_mb(tms.pid)
        finally:
            processes.stop(tms.pid, timeout=20)
            await mongo.close()

    fresh.sort()
    figures = {
        "freshness p50 s": round(percentile(fresh, 50), 3),
        "freshness p95 s": round(percentile(fresh, 95), 3),
        "launch s": round(launch_s, 3),
        "WMS peak RSS MB": round(wms_rss, 1),
        "TMS peak RSS MB": round(tms_rss, 1),
        "rest-get p50 ms": round(percentile(latencies, 50) * 1000, 2),
        "rest-get p99 ms": round(percentile(latencies, 99) * 1000, 2),
        "rest-get req/s": round(rest["ops"] / rest["seconds"], 1),
        "database alone p99 ms (reference)": round(percentile(alone, 99) * 1000, 2),
        "TMS catch-up s": round(catch_up, 1),
    }
    emit(
        "scale",
        figures,
        {},
        "; ".join(f"{k} < {v:g}" for k, v in TARGETS.items()),
        all(figures[k] < v for k, v in TARGETS.items()),
        f"{len(workflows)} active workflows, {len(taskforces)} taskforces, {len(taskforces) * JOBS_PER_TASKFORCE} "
        f"jobs in {len(taskforces) // TASKFORCES_PER_LOG or 1} job event logs watched by one TMS; seeded through "
        f"the driver with the documents the WMS writes ({seed_seconds:.0f} s; POSTs take too long here); "
        f"{len(fresh)} freshness samples while {args.stream:g} chirps/s stream and {CLIENTS} clients GET random "
        f"taskforces, alternating with as many clients sending the handler's find straight to the database "
        f"(reference p99); launch = {args.launch} taskforces in {args.launch // 100} workflows posted at once; "
        f"TMS catch-up = from TMS start to the WMS showing every job running ({n_events} events).",
        ratio={},
        details={"freshness_s": [round(x, 3) for x in fresh], "rest_get": rest, "seed_seconds": round(seed_seconds, 1)},
    )


async def launch(wms: Any, http: Any, n_taskforces: int) -> float:
    """Post ``n_taskforces / 100`` workflows of 100 tasks at ``beta`` at once; seconds from the first POST sent to the
    last taskforce in ``pending-starter``."""
    request = {
        "public_queue_aliases": ["in", "out"],
        "tasks": [task_request(["beta"], ["in"], ["out"], n_workers=1)] * 100,
    }
    users = wms.submitters(max(1, n_taskforces // 100))
    sent = time.time()

    async def post(headers: dict[str, str]) -> list[str]:
        resp = await http.post("/v0/workflows", json=request, headers=headers)
        check(resp)
        return [tf["taskforce_uuid"] for tf in resp.json()["taskforces"]]

    uuids = [u for batch in await asyncio.gather(*(post(h) for h in users)) for u in batch]
    when: dict[str, float] = {}
    deadline = time.monotonic() + 240
    while len(when) < len(uuids):
        for uuid in [u for u in uuids if u not in when]:
            got = await http.get(f"/v0/taskforces/{uuid}")
            check(got)
            if (t := reached(got.json(), "pending-starter")) is not None:
                when[uuid] = t
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(uuids) - len(when)} taskforces did not reach pending-starter")
        await asyncio.sleep(0.5)
    return max(when.values()) - sent


if __name__ == "__main__":
    run(main)
