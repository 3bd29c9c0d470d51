"""Benchmark freshness: from a pilot-status event appended to a watched job event log to the WMS showing it.

Runs the full dev stack (``ewms_dev.devstack.DevStack``) and submits one workflow (1 task at ``local``, 20 workers); the
local backend starts an idle stand-in pilot per job, so only this benchmark writes pilot statuses. For each job in
turn it appends the generic event ``HTChirpEWMSPilotStatus: "Tasking"``
(``ewms_wire.job_event_log.JobEventLogWriter.generic``)
to the taskforce's ``job_event_log_fpath`` under its cluster id, and polls ``GET /v0/taskforces/{uuid}`` every
20 ms until ``compound_statuses`` counts one more ``Tasking`` job. The TMS watcher reads the log, aggregates and
reports it to the WMS. No floor (absolute). Target: p95 < 2 s.

    .venv/bin/python -m bench.bench_freshness [--samples 20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

from bench.common import check, dev_stack, emit, http_client, idle_pilot_command, log, percentile, run
from ewms_dev.factories import task_request
from ewms_wire.chirp import ChirpAttr, PilotStatus, format_chirp
from ewms_wire.job_event_log import JobEventLogWriter

POLL = 0.02
TIMEOUT = 30.0


def count(compound: dict[str, dict[str, int]], pilot_status: str) -> int:
    """Jobs with this pilot status, whatever their HTCondor status."""
    return sum(by_pilot.get(pilot_status, 0) for by_pilot in compound.values())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    request = {
        "public_queue_aliases": ["in", "out"],
        "tasks": [task_request(["local"], ["in"], ["out"], task_image="", n_workers=args.samples)],
    }
    tasking = str(PilotStatus.TASKING)
    rng = random.Random(3)

    with dev_stack(max_local_jobs=args.samples, pilot_command=idle_pilot_command()) as state:
        async with http_client(state.url, state.user_token, 1) as http:
            resp = await http.post("/v0/workflows", json=request)
            check(resp)
            uuid = resp.json()["taskforces"][0]["taskforce_uuid"]

            async def taskforce() -> dict[str, Any]:
                got = await http.get(f"/v0/taskforces/{uuid}")
                check(got)
                return dict(got.json())

            deadline = time.monotonic() + 120
            while True:  # until every job runs and the WMS knows it
                tf = await taskforce()
                running = tf["compound_statuses"].get("RUNNING", {}).get("null", 0)
                if tf["cluster_id"] is not None and running == args.samples:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the jobs did not all run: {tf['phase']} {tf['compound_statuses']}")
                await asyncio.sleep(0.2)
            log(f"taskforce {uuid}: cluster {tf['cluster_id']}, {args.samples} jobs running")
            writer = JobEventLogWriter(tf["job_event_log_fpath"])
            latencies: list[float] = []
            for proc in range(args.samples):
                await asyncio.sleep(rng.uniform(0.1, 0.6))  # do not phase-lock with the watcher's interval
                started = time.perf_counter()
                writer.generic(tf["cluster_id"], proc, format_chirp(ChirpAttr.STATUS, tasking))
                while count((await taskforce())["compound_statuses"], tasking) <= proc:
                    if time.perf_counter() - started > TIMEOUT:
                        raise TimeoutError(f"event {proc} did not reach the WMS within {TIMEOUT}s")
                    await asyncio.sleep(POLL)
                latencies.append(time.perf_counter() - started)

    lat = sorted(latencies)
    figures = {
        "p50 s": round(percentile(lat, 50), 3),
        "p95 s": round(percentile(lat, 95), 3),
        "max s": round(lat[-1], 3),
        "mean s": round(sum(lat) / len(lat), 3),
    }
    emit(
        "freshness",
        figures,
        {},
        "p95 < 2 s from event appended to the WMS showing it",
        figures["p95 s"] < 2.0,
        f"{args.samples} events (one Tasking status per job), polled every {POLL * 1000:.0f} ms "
        "(adds up to that much to each sample); dev stack defaults (TMS watcher interval 0.25 s).",
        ratio={},
        details={"samples_s": [round(x, 3) for x in latencies]},
    )


if __name__ == "__main__":
    run(main)
