"""Benchmark rest-submit: ``POST /v0/workflows`` (2 tasks x 2 locations) from 16 concurrent clients.

Figures: workflows/s, p50 and p99 (load: :class:`bench.common.LeanHTTP`, each client its own user) of a WMS that
serves REST only (``WMS_RUN_DAEMONS=false``, as REST replicas run beside one daemon instance). Each request writes
1 queue reservation (naming the workflow's vhost), 4 queue profiles (3 queues and the failed-events queue),
2 task directives, 4 taskforces and 1 workflow.
Floor: inserting the same documents (built by the WMS's own translation code, ahead of the timed window) through
``pymongo.AsyncMongoClient`` into a database with the same indexes on the same server, one ``insert_many`` per
collection, from 16 concurrent tasks.
Target: workflows/s >= 0.5 x floor.
Also measured, without a target: the same load on a WMS that runs its daemons in the same process, which then
creates a vhost with its policies and 4 quorum queues on the broker and advances 4 taskforces per workflow on this
machine's 2 cores while it serves; how many workflows were activated by the end of that window and how long the rest
took.

    .venv/bin/python -m bench.bench_rest_submit [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.common import (
    OWNER,
    LeanHTTP,
    WMSProcess,
    broker_pid,
    check,
    emit,
    log,
    run,
    run_load,
    server_cpu_ms,
    two_by_two_request,
    wms_process,
)
from mqs_client import FAILED_EVENTS_ALIAS, MQSConfig, make_mqs_client
from mqs_client.embedded import make_mqid, make_vhost
from wms import schema
from wms.config import WMSConfig
from wms.database.store import Store
from wms.translation import build_documents, plan_workflow

CLIENTS = 16
NO_QUOTA = "1000000"  # active workflows per user: a fast machine may submit more than 100 per user here
FLOOR_DB = "ewms_floor"
COMBINED_DB = "ewms_with_daemons"
FLOOR_BATCHES = 4000  # document sets prepared for the floor (it stops early if it uses them all)


def documents(config: WMSConfig, broker_address: str) -> dict[str, list[dict[str, Any]]]:
    """Everything one ``POST /v0/workflows`` of :func:`two_by_two_request` stores, per collection."""
    plan = plan_workflow(two_by_two_request(), OWNER, config)
    mqids = {alias: make_mqid() for alias in plan.queue_aliases}
    queues = [{"alias": a, "mqid": mqids[a], "is_public": a in plan.public_aliases} for a in plan.queue_aliases]
    queues.append({"alias": FAILED_EVENTS_ALIAS, "mqid": make_mqid(), "is_public": True})
    vhost, now = make_vhost(plan.workflow_id), time.time()
    group = {"workflow_id": plan.workflow_id, "vhost": vhost, "timestamp": now, "queues": queues, "criteria": None,
             "activated_ts": None, "deactivated_ts": None, "deleted_ts": None}  # fmt: skip
    profiles = [
        {"mqid": q["mqid"], "workflow_id": plan.workflow_id, "timestamp": now, "alias": q["alias"],
         "is_public": q["is_public"], "is_activated": False, "auth_token": None, "broker_type": "rabbitmq",
         "broker_address": f"{broker_address}/{vhost}", "vhost": vhost, "token_expires_at": None,
         "deactivated_ts": None, "deleted_ts": None}
        for q in queues
    ]  # fmt: skip
    workflow, directives, taskforces = build_documents(plan, mqids)
    return {"mq_groups": [group], "mq_profiles": profiles, "task_directives": directives,
            "taskforces": taskforces, "workflows": [workflow]}  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="timed window of each run")
    args = parser.parse_args()

    async with wms_process(MAX_ACTIVE_WORKFLOWS_PER_USER=NO_QUOTA, WMS_RUN_DAEMONS="false") as wms:
        mongo = wms.client()
        config = WMSConfig.from_env(wms.env)
        floor_db = mongo[FLOOR_DB]
        await Store(mongo, FLOOR_DB, schema.load(config.openapi_path)).ensure_indexes()
        mqs = make_mqs_client(floor_db, MQSConfig.from_env(wms.env))
        await mqs.ensure_indexes()
        await mqs.close()
        batches = [documents(config, wms.broker.address) for _ in range(FLOOR_BATCHES)]
        watch = {"wms": wms.pid, "nx-27017": wms.mongo.pid}

        async def insert(n: int) -> None:
            for coll, docs in batches[n].items():
                await floor_db[coll].insert_many(docs, ordered=True)

        base = (
            await run_load(insert, CLIENTS, args.seconds, warmup=CLIENTS, max_ops=len(batches) - CLIENTS, watch=watch)
        ).summary()
        rest = await submit_load(wms, args.seconds, watch)
        with wms.another(WMS_DB_NAME=COMBINED_DB, WMS_RUN_DAEMONS="true") as both:
            combined = await submit_load(
                both, args.seconds, {"wms": both.pid, "nx-27017": wms.mongo.pid, "broker": broker_pid(wms.broker)}
            )
            catch_up = await activation_catch_up(mongo[COMBINED_DB])
        await mongo.close()
    log(f"rest {rest['rate']}/s, floor {base['rate']}/s; with daemons {combined['rate']}/s, {catch_up}")

    figures = {
        "workflows/s": rest["rate"],
        "p50 ms": rest["p50_ms"],
        "p99 ms": rest["p99_ms"],
        "CPU ms/workflow (server side)": server_cpu_ms(rest, False),
        "workflows/s, daemons in the same process": combined["rate"],
        "activated by the end of that window (%)": catch_up["activated_pct"],
        "seconds to activate the rest": catch_up["seconds"],
    }
    floor = {"workflows/s": base["rate"], "p50 ms": base["p50_ms"], "p99 ms": base["p99_ms"],
             "CPU ms/workflow (server side)": server_cpu_ms(base, True)}  # fmt: skip
    ratio = round(figures["workflows/s"] / floor["workflows/s"], 3)
    errors = rest["errors"] + combined["errors"]
    emit(
        "rest-submit",
        figures,
        floor,
        "workflows/s >= 0.5 x floor at 16 clients",
        ratio >= 0.5 and errors == 0,
        f"{CLIENTS} clients, each its own user; request = 2 tasks x 2 locations (4 taskforces, 3 queues and the "
        "failed-events queue); "
        f"errors: {errors} {list(rest['error_samples'])[:2] + list(combined['error_samples'])[:2]}. "
        "CPU ms/workflow (server side): WMS + nx-27017 for REST, driver + nx-27017 for the floor. With the daemons "
        "in the same process, each workflow also costs the broker "
        f"{combined['cpu_ms_per_op'].get('broker')} ms CPU (a vhost, its policies, 4 quorum queues) and the database "
        f"{combined['cpu_ms_per_op'].get('nx-27017')} ms (activation and launch writes) on the same 2 cores.",
        ratio={"workflows/s": ratio},
        details={"rest": rest, "floor": base, "with_daemons": combined, "catch_up": catch_up},
    )


async def submit_load(wms: WMSProcess, seconds: float, watch: dict[str, int]) -> dict[str, Any]:
    """POST the 2 x 2 request from CLIENTS concurrent users for ``seconds``; the load summary."""
    request = two_by_two_request()
    users = wms.submitters(CLIENTS)
    async with LeanHTTP(wms.url, wms.token(), CLIENTS) as http:

        async def submit(n: int) -> None:
            check(await http.post("/v0/workflows", request, headers=users[n % CLIENTS]))

        return (await run_load(submit, CLIENTS, seconds, warmup=CLIENTS, watch=watch)).summary()


async def activation_catch_up(db: Any, limit: float = 120.0) -> dict[str, Any]:
    """How many stored workflows have active queues now, and the seconds until all have (at most ``limit``)."""
    started = time.perf_counter()
    stored = await db.workflows.count_documents({})
    activated = first = await db.workflows.count_documents({"_mq_activated_ts": {"$ne": None}})
    while activated < stored and time.perf_counter() - started < limit:
        await asyncio.sleep(0.5)
        activated = await db.workflows.count_documents({"_mq_activated_ts": {"$ne": None}})
    return {
        "stored": stored,
        "activated_pct": round(100 * first / stored, 1) if stored else 0.0,
        "seconds": round(time.perf_counter() - started, 1) if activated == stored else None,
    }


if __name__ == "__main__":
    run(main)
