"""Benchmark rest-get: ``GET /v0/taskforces/{uuid}`` at 1, 16 and 64 concurrent clients with a real user token.

Figures: requests/s, p50 and p99 latency per concurrency, over 10,000 stored taskforces (random uuids), with load
from :class:`bench.common.LeanHTTP` (plus one 16-client run through httpx, for reference); floor and WMS windows
alternate, three times each, and the best window of each counts.
Floor: the same ``find_one({"taskforce_uuid": {"$eq": ...}}, {"_id": False})`` the handler sends (its store makes
equalities exact) through ``pymongo.AsyncMongoClient`` from the bench process against the same database, at the same
concurrency.
Target: rate >= 0.6 x floor at every concurrency; p99 < 50 ms at 16 clients.

    .venv/bin/python -m bench.bench_rest_get [--taskforces 10000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import random

from bench.common import OWNER, LeanHTTP, check, emit, http_client, log, run, run_load, server_cpu_ms, wms_process

LEVELS = (1, 16, 64)
ROUNDS = 3  # the best of this many timed windows counts, for the floor and the WMS alike
CPU = "c16 CPU ms/req (server side)"
HTTPX = "c16 req/s, httpx client (reference)"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taskforces", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="timed window of each run")
    args = parser.parse_args()

    async with wms_process(seed=args.taskforces) as wms:
        mongo = wms.client()
        db = mongo[wms.db_name]
        uuids = wms.seeded.uuids
        rng = random.Random(1)
        picks = [rng.choice(uuids) for _ in range(100_000)]
        watch = {"wms": wms.pid, "nx-27017": wms.mongo.pid}

        async def driver_get(n: int) -> None:
            doc = await db.taskforces.find_one({"taskforce_uuid": {"$eq": picks[n % len(picks)]}}, {"_id": False})
            if doc is None:
                raise LookupError("taskforce not found")

        figures: dict[str, float] = {}
        floor: dict[str, float] = {}
        details: dict[str, dict[str, object]] = {}
        for clients in LEVELS:
            async with LeanHTTP(wms.url, wms.token(), clients) as http:

                async def rest_get(n: int, http: LeanHTTP = http) -> None:
                    check(await http.get(f"/v0/taskforces/{picks[n % len(picks)]}"))

                bases, rests = [], []
                for _ in range(ROUNDS):  # alternating, so that a slow spell of the machine hits both alike
                    bases.append(await run_load(driver_get, clients, args.seconds, warmup=clients * 5, watch=watch))
                    rests.append(await run_load(rest_get, clients, args.seconds, warmup=clients * 5, watch=watch))
                base, rest = (max((r.summary() for r in runs), key=lambda s: s["rate"]) for runs in (bases, rests))
            log(f"c{clients}: rest {rest['rate']}/s p99 {rest['p99_ms']}ms; floor {base['rate']}/s")
            for key in ("rate", "p50_ms", "p99_ms"):
                name = f"c{clients} {'req/s' if key == 'rate' else key.replace('_ms', ' ms')}"
                figures[name], floor[name] = rest[key], base[key]
            if clients == 16:
                figures[CPU], floor[CPU] = server_cpu_ms(rest, False), server_cpu_ms(base, True)
                async with http_client(wms.url, wms.token(), clients) as httpx_client:

                    async def httpx_get(n: int) -> None:
                        check(await httpx_client.get(f"/v0/taskforces/{picks[n % len(picks)]}"))

                    ref = (await run_load(httpx_get, clients, args.seconds, warmup=clients * 5, watch=watch)).summary()
                figures[HTTPX], floor[HTTPX] = ref["rate"], base["rate"]
                details["c16 httpx"] = {"rest": ref}
            details[f"c{clients}"] = {"rest": rest, "floor": base}
        await mongo.close()

    ratios = {f"c{c} req/s": round(figures[f"c{c} req/s"] / floor[f"c{c} req/s"], 3) for c in LEVELS}
    p99_16 = figures["c16 p99 ms"]
    met = all(r >= 0.6 for r in ratios.values()) and p99_16 < 50
    worst = min(ratios, key=ratios.__getitem__)
    ratios[HTTPX] = round(figures[HTTPX] / floor[HTTPX], 3)  # shown, not judged
    notes = (
        f"{args.taskforces} taskforces owned by {OWNER}; worst ratio {ratios[worst]} at {worst.split()[0]}; "
        f"p99 at 16 clients {p99_16} ms. Load from one process with lean keep-alive connections (bench.common."
        "LeanHTTP); the same 16-client run through a pooled httpx.AsyncClient is given for reference (not judged). "
        "WMS, nx-27017 and client share the machine's cores. CPU ms/req (server side): WMS + nx-27017 for REST, "
        "driver + nx-27017 for the floor."
    )
    emit(
        "rest-get",
        figures,
        floor,
        "rate >= 0.6 x floor at 1/16/64 clients; p99 < 50 ms at 16 clients",
        met,
        notes,
        ratio=ratios,
        details={"seed_seconds": round(wms.seeded.seconds, 1), "window_seconds": args.seconds, "runs": details},
    )


if __name__ == "__main__":
    run(main)
