"""Benchmark memory: the WMS's resident memory after 100,000 taskforces are stored and 10,000 requests served.

Bulk-inserts 100,000 taskforces through the driver, starts a fresh WMS process on them and reads its RSS once it
answers (the floor: RSS at start; the WMS holds no taskforces in memory, so storing them before or after its start
makes no difference to it), then serves 10,000 requests from 16 clients: 80% ``GET /v0/taskforces/{uuid}`` (random, user
token), 10% ``POST /v0/workflows`` (2 tasks x 2 locations), 9.5% ``POST /v0/query/taskforces`` for one workflow's
taskforces and 0.5% for a page of 1000 by phase and schedd (both with a TMS token). Large pages are kept rare: each
takes nx-27017 about a second over 100,000 documents (see rest-query). Figures: RSS after, growth, peak RSS (VmHWM).
Target: growth < 100 MB.

    .venv/bin/python -m bench.bench_memory [--taskforces 100000] [--requests 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import random

from bench.common import (
    CLUSTERS,
    PHASE_MIX,
    LeanHTTP,
    check,
    emit,
    log,
    peak_rss_mb,
    rss_mb,
    run,
    run_load,
    two_by_two_request,
    wms_process,
)
from wms.auth import Role

CLIENTS = 16
NO_QUOTA = "1000000"  # active workflows per user: a fast machine may submit more than 100 per user here


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taskforces", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args()

    async with wms_process(seed=args.taskforces, MAX_ACTIVE_WORKFLOWS_PER_USER=NO_QUOTA) as wms:
        await asyncio.sleep(2)  # let start-up settle (daemons' first passes)
        at_start = rss_mb(wms.pid)
        seeded = wms.seeded
        log(f"RSS at start {at_start:.1f} MB, with {len(seeded.uuids)} taskforces stored")
        rng = random.Random(5)
        phases = [p for p, _ in PHASE_MIX]
        request = two_by_two_request()
        kinds = rng.choices(["get", "submit", "workflow", "big-page"], [800, 100, 95, 5], k=args.requests)
        submitters = wms.submitters(CLIENTS)
        user = LeanHTTP(wms.url, wms.token(), CLIENTS)
        tms = LeanHTTP(wms.url, wms.token(Role.TMS, "bench-tms"), CLIENTS)
        async with user, tms:

            async def one(n: int) -> None:
                kind = kinds[n]
                if kind == "get":
                    resp = await user.get(f"/v0/taskforces/{rng.choice(seeded.uuids)}")
                elif kind == "submit":
                    resp = await user.post("/v0/workflows", request, headers=submitters[n % CLIENTS])
                elif kind == "workflow":
                    query = {"workflow_id": rng.choice(seeded.workflow_ids)}
                    resp = await tms.post("/v0/query/taskforces", {"query": query})
                else:
                    query = {"phase": rng.choice(phases), "schedd": rng.choice(list(CLUSTERS.values()))}
                    resp = await tms.post("/v0/query/taskforces", {"query": query, "limit": 1000})
                check(resp)

            load = await run_load(one, CLIENTS, 3600, max_ops=args.requests)
        await asyncio.sleep(2)  # let the queue activations of the submitted workflows finish
        after = rss_mb(wms.pid)
        peak = peak_rss_mb(wms.pid)
        mongo_rss = rss_mb(wms.mongo.pid)

    summary = load.summary()
    growth = after - at_start
    figures = {
        "RSS after MB": round(after, 1),
        "growth MB": round(growth, 1),
        "peak RSS MB": round(peak, 1),
        "requests/s": summary["rate"],
    }
    emit(
        "memory",
        figures,
        {"RSS after MB": round(at_start, 1)},
        f"growth < 100 MB (RSS after {args.taskforces:,} taskforces stored and {args.requests:,} requests served, "
        "minus RSS at start)",
        growth < 100 and summary["errors"] == 0,
        f"{args.requests} requests from {CLIENTS} clients (80% GET taskforce, 10% submit, 9.5% query by workflow, "
        f"0.5% page of 1000), errors {summary['errors']} {list(summary['error_samples'])[:2]}; "
        f"nx-27017 RSS at the end {mongo_rss:.1f} MB (not counted).",
        details={"load": summary, "seed_seconds": round(seeded.seconds, 1)},
    )


if __name__ == "__main__":
    run(main)
