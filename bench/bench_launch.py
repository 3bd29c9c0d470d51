"""Benchmark launch: one workflow with 100 taskforces, from ``POST /v0/workflows`` to all ``pending-starter`` (queues
activated, taskforces released by launch control) and to all ``condor-submit`` (jobs submitted by a TMS with the
``local`` backend and confirmed to the WMS).

Runs the full dev stack (``ewms_dev.devstack.DevStack``: nx-27017, private RabbitMQ, WMS, TMS). Times come from each
taskforce's ``phase_change_log`` (written by the WMS on this machine's clock) against the time the POST was sent.
The local backend starts an idle stand-in pilot per job: pilot start-up is ``bench/bench_pilot.py``'s business.
No floor: absolute figures, with the upstream design's figure beside them (queues activated on a 15 s cycle, then
taskforces released at 1 per second: 15 s + 100 s for 100 taskforces).
Target: < 2 s to all pending-starter.

    .venv/bin/python -m bench.bench_launch [--taskforces 100]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.common import check, dev_stack, emit, http_client, idle_pilot_command, log, run
from ewms_dev.factories import task_request

PHASES = ("pre-launch", "pending-starter", "condor-submit")
TIMEOUT = 240.0


def reached(doc: dict[str, Any], phase: str) -> float | None:
    """When the taskforce first entered ``phase`` (None: not yet)."""
    times = [e["timestamp"] for e in doc["phase_change_log"] if e["target_phase"] == phase and e["was_successful"]]
    return min(times) if times else None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taskforces", type=int, default=100)
    args = parser.parse_args()
    request = {
        "public_queue_aliases": ["in", "out"],
        "tasks": [task_request(["local"], ["in"], ["out"], task_image="", n_workers=1) for _ in range(args.taskforces)],
    }

    with dev_stack(max_local_jobs=4, pilot_command=idle_pilot_command()) as state:
        async with http_client(state.url, state.user_token, 4) as http:
            sent = time.time()
            resp = await http.post("/v0/workflows", json=request)
            check(resp)
            answered = time.time()
            workflow_id = resp.json()["workflow"]["workflow_id"]
            query = {
                "query": {"workflow_id": workflow_id},
                "projection": ["taskforce_uuid", "phase", "phase_change_log"],
                "limit": 1000,
            }
            docs: list[dict[str, Any]] = []
            while time.time() - sent < TIMEOUT:
                page = await http.post("/v0/query/taskforces", json=query)
                check(page)
                docs = page.json()["taskforces"]
                if len(docs) == args.taskforces and all(reached(d, "condor-submit") for d in docs):
                    break
                await asyncio.sleep(0.2)

    figures: dict[str, float | None] = {"POST response s": round(answered - sent, 3)}
    for phase in PHASES:
        times = [reached(d, phase) for d in docs]
        done = [t for t in times if t is not None]
        complete = len(done) == args.taskforces
        figures[f"to all {phase} s"] = round(max(done) - sent, 3) if complete else None
        figures[f"to first {phase} s"] = round(min(done) - sent, 3) if done else None
        log(f"{phase}: {len(done)}/{args.taskforces}")
    upstream = {"to all pending-starter s": 15.0 + args.taskforces * 1.0}
    to_pending = figures["to all pending-starter s"]
    submit_s = figures["to all condor-submit s"]
    notes = (
        f"one workflow of {args.taskforces} tasks x 1 location (local), n_workers 1 each; "
        f"upstream design: 15 s activation + 1 taskforce/s = {upstream['to all pending-starter s']:.0f} s to all "
        "pending-starter. "
    )
    if submit_s is not None:
        notes += f"The TMS submitted and confirmed {args.taskforces / submit_s:.1f} taskforces/s overall."
    else:
        notes += f"Not all taskforces reached condor-submit within {TIMEOUT:.0f} s."
    emit(
        "launch",
        figures,
        {},
        "< 2 s from POST to all pending-starter",
        to_pending is not None and to_pending < 2.0,
        notes,
        ratio={},
        details={"upstream_design": upstream, "taskforces_seen": len(docs)},
    )


if __name__ == "__main__":
    run(main)
