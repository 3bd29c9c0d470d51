"""Benchmark rest-query: ``POST /v0/query/taskforces`` by phase and schedd over 100,000 stored taskforces.

Queries as the TMS does (a ``system-tms`` token: no owner clause), through :class:`bench.common.LeanHTTP`.
Figures: the first page (default page size, one client, repeated) as pages/s and p50/p99, and a full paginated scan
(page size 1000, following ``next_after`` to the end) as taskforces/s.
Floor: the ``find`` the handler sends (built by the same ``Store.page``: the filter with ``$eq`` equalities, the
keyset clause, sort in ``_id`` order, limit + 1, no projection) through ``pymongo.AsyncMongoClient`` from the bench
process against the same database. Floor and WMS alternate, first-page windows twice each (the best of each counts),
scans while the budget lasts (the best of each counts).
Target: each rate >= 0.5 x floor.

    .venv/bin/python -m bench.bench_rest_query [--taskforces 100000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient

from bench.common import CLUSTERS, LeanHTTP, check, emit, log, run, run_load, server_cpu_ms, wms_process
from wms import schema
from wms.auth import Role
from wms.config import DEFAULT_OPENAPI_PATH
from wms.database.store import Store

QUERY = {"phase": "condor-submit", "schedd": CLUSTERS["alpha"]}
FIRST_PAGE = 100  # QUERY_PAGE_SIZE_DEFAULT
SCAN_PAGE = 1000  # QUERY_PAGE_SIZE_MAX
MAX_SCANS, SCAN_BUDGET_S = 3, 60.0  # repeat the scans (best is kept) while they are quick
ROUNDS = 2  # first-page windows of the floor and the WMS alternate; the best of this many counts for each


async def driver_page(store: Store, limit: int, after: str | None) -> tuple[int, str | None]:
    """The floor: the ``find`` the handler sends for the TMS (no owner clause, so the handler's ``scoped`` adds
    nothing), built by the same :meth:`Store.page`, straight through the driver (a plain collection: the store's
    also times each command); the page's size and next cursor."""
    plain = store.client[store.db.name][store.taskforces.name]
    cursor = store.page(plain, QUERY, None, ObjectId(after) if after else None, limit + 1)
    docs = await cursor.to_list(None)
    more = str(docs[limit - 1]["_id"]) if len(docs) > limit else None
    return len(docs[:limit]), more


async def floor_store(client: AsyncMongoClient[dict[str, Any]], db_name: str) -> Store:
    """A :class:`Store` on the bench's own driver client, set for the server as the WMS's is."""
    store = Store(client, db_name, schema.load(str(DEFAULT_OPENAPI_PATH)))
    await store.detect_server()
    return store


@dataclass
class QueryBench:
    """A WMS over seeded taskforces, with the floor's store on the bench's own driver client."""

    wms: Any  # bench.common.WMSProcess
    store: Store
    matching: int  # how many seeded taskforces match QUERY
    http: LeanHTTP  # one keep-alive connection, as the TMS

    @property
    def watch(self) -> dict[str, int]:
        """The serving processes whose CPU is measured."""
        return {"wms": self.wms.pid, "nx-27017": self.wms.mongo.pid}

    async def floor_page(self, limit: int, after: str | None) -> tuple[int, str | None]:
        """:func:`driver_page` on this bench's store."""
        return await driver_page(self.store, limit, after)

    async def rest_page(self, limit: int, after: str | None) -> tuple[int, str | None]:
        """The same page through ``POST /v0/query/taskforces``: its size and next cursor."""
        body: dict[str, Any] = {"query": QUERY, "limit": limit}
        if after:
            body["after"] = after
        resp = await self.http.post("/v0/query/taskforces", body)
        check(resp)
        page = resp.json()
        return len(page["taskforces"]), page["next_after"]


@asynccontextmanager
async def query_bench(taskforces: int) -> AsyncIterator[QueryBench]:
    """A WMS seeded with ``taskforces`` taskforces, for the query benchmarks."""
    async with wms_process(seed=taskforces) as wms:
        mongo = wms.client()
        try:
            store = await floor_store(mongo, wms.db_name)
            matching = await store.count(store.taskforces, QUERY)
            log(f"{matching} of {taskforces} taskforces match {QUERY}")
            async with LeanHTTP(wms.url, wms.token(Role.TMS, "bench-tms"), 1) as http:
                yield QueryBench(wms, store, matching, http)
        finally:
            await mongo.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taskforces", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="timed window of the first-page runs")
    args = parser.parse_args()

    async with query_bench(args.taskforces) as bench:
        wms, matching, watch = bench.wms, bench.matching, bench.watch
        floor_page, rest_page = bench.floor_page, bench.rest_page

        async def scan(page: Any) -> tuple[int, float]:
            started, total, after = time.perf_counter(), 0, None
            while True:
                n, after = await page(SCAN_PAGE, after)
                total += n
                if after is None:
                    return total, time.perf_counter() - started

        windows: dict[str, list[dict[str, Any]]] = {"floor": [], "rest": []}
        for _ in range(ROUNDS):  # alternating, so that a slow spell of the machine hits both alike
            for name, page in (("floor", floor_page), ("rest", rest_page)):

                async def first_page(_n: int, page: Any = page) -> None:
                    await page(FIRST_PAGE, None)

                load = await run_load(first_page, 1, args.seconds, warmup=5, watch=watch)
                windows[name].append(load.summary())
        first = {name: max(runs, key=lambda s: s["rate"]) for name, runs in windows.items()}
        scans: dict[str, list[tuple[int, float]]] = {"floor": [], "rest": []}
        started = time.perf_counter()
        while not scans["rest"] or (
            len(scans["rest"]) < MAX_SCANS and time.perf_counter() - started < SCAN_BUDGET_S
        ):  # alternate, so that both see the same machine state
            scans["floor"].append(await scan(floor_page))
            scans["rest"].append(await scan(rest_page))

    best = {k: min(v, key=lambda r: r[1]) for k, v in scans.items()}
    if best["rest"][0] != best["floor"][0]:
        raise RuntimeError(f"the scans disagree: {best}")
    figures = {
        "first page pages/s": first["rest"]["rate"],
        "first page p50 ms": first["rest"]["p50_ms"],
        "first page p99 ms": first["rest"]["p99_ms"],
        "full scan taskforces/s": round(best["rest"][0] / best["rest"][1], 1),
        "full scan seconds": round(best["rest"][1], 3),
    }
    floor = {
        "first page pages/s": first["floor"]["rate"],
        "first page p50 ms": first["floor"]["p50_ms"],
        "first page p99 ms": first["floor"]["p99_ms"],
        "full scan taskforces/s": round(best["floor"][0] / best["floor"][1], 1),
        "full scan seconds": round(best["floor"][1], 3),
        "first page CPU ms (server side)": server_cpu_ms(first["floor"], True),
    }
    figures["first page CPU ms (server side)"] = server_cpu_ms(first["rest"], False)
    ratios = {k: round(figures[k] / floor[k], 3) for k in ("first page pages/s", "full scan taskforces/s")}
    emit(
        "rest-query",
        figures,
        floor,
        "rate >= 0.5 x floor (first page and full scan)",
        all(r >= 0.5 for r in ratios.values()),
        f"query {QUERY} over {args.taskforces} taskforces matches {matching} (the scan reads {best['rest'][0]}); "
        f"first page = {FIRST_PAGE} items, scan pages of {SCAN_PAGE}; best of {ROUNDS} first-page windows and of "
        f"{len(scans['rest'])} scan(s) each, floor and WMS alternating; as the TMS (no owner clause).",
        ratio=ratios,
        details={
            "seed_seconds": round(wms.seeded.seconds, 1),
            "first_page_windows": windows,
            "scans": {k: [[n, round(s, 3)] for n, s in v] for k, v in scans.items()},
        },
    )


if __name__ == "__main__":
    run(main)
