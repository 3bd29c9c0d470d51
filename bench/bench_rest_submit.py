"""Benchmark rest-submit: ``POST /v0/workflows`` (2 tasks x 2 locations) from 16 concurrent clients.

Figures: workflows/s, p50 and p99 (load: :class:`bench.common.LeanHTTP`, each client its own user). Each request
writes 1 queue reservation, 3 queue profiles, 2 task directives, 4 taskforces and 1 workflow; the WMS then activates
the 3 queues on the broker in the background, as in production.
Floor: inserting the same documents (built by the WMS's own translation code, ahead of the timed window) through
``pymongo.AsyncMongoClient`` into a database with the same indexes on the same server, one ``insert_many`` per
collection, from 16 concurrent tasks.
Target: workflows/s >= 0.5 x floor.

    .venv/bin/python -m bench.bench_rest_submit [--seconds 8]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.common import (
    OWNER,
    LeanHTTP,
    check,
    emit,
    log,
    run,
    run_load,
    server_cpu_ms,
    two_by_two_request,
    wms_process,
)
from mqs_client import MQSConfig, make_mqs_client
from mqs_client.embedded import make_mqid
from wms import schema
from wms.config import WMSConfig
from wms.database.store import Store
from wms.translation import build_documents, plan_workflow

CLIENTS = 16
NO_QUOTA = "1000000"  # active workflows per user: a fast machine may submit more than 100 per user here
FLOOR_DB = "ewms_floor"
FLOOR_BATCHES = 4000  # document sets prepared for the floor (it stops early if it uses them all)


def documents(config: WMSConfig, broker_address: str) -> dict[str, list[dict[str, Any]]]:
    """Everything one ``POST /v0/workflows`` of :func:`two_by_two_request` stores, per collection."""
    plan = plan_workflow(two_by_two_request(), OWNER, config)
    mqids = {alias: make_mqid() for alias in plan.queue_aliases}
    queues = [{"alias": a, "mqid": mqids[a], "is_public": a in plan.public_aliases} for a in plan.queue_aliases]
    now = time.time()
    group = {"workflow_id": plan.workflow_id, "timestamp": now, "queues": queues, "criteria": None,
             "activated_ts": None, "deactivated_ts": None, "deleted_ts": None}  # fmt: skip
    profiles = [
        {"mqid": q["mqid"], "workflow_id": plan.workflow_id, "timestamp": now, "alias": q["alias"],
         "is_public": q["is_public"], "is_activated": False, "auth_token": None, "broker_type": "rabbitmq",
         "broker_address": broker_address, "token_expires_at": None, "deactivated_ts": None, "deleted_ts": None}
        for q in queues
    ]  # fmt: skip
    workflow, directives, taskforces = build_documents(plan, mqids)
    return {"mq_groups": [group], "mq_profiles": profiles, "task_directives": directives,
            "taskforces": taskforces, "workflows": [workflow]}  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="timed window of each run")
    args = parser.parse_args()

    async with wms_process(MAX_ACTIVE_WORKFLOWS_PER_USER=NO_QUOTA) as wms:
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

        request = two_by_two_request()
        users = wms.submitters(CLIENTS)
        async with LeanHTTP(wms.url, wms.token(), CLIENTS) as http:

            async def submit(n: int) -> None:
                resp = await http.post("/v0/workflows", request, headers=users[n % CLIENTS])
                check(resp)

            base = (
                await run_load(insert, CLIENTS, args.seconds, warmup=CLIENTS, max_ops=len(batches) - CLIENTS,
                               watch=watch)
            ).summary()  # fmt: skip
            rest = (await run_load(submit, CLIENTS, args.seconds, warmup=CLIENTS, watch=watch)).summary()
        activated = await mongo[wms.db_name].workflows.count_documents({"_mq_activated_ts": {"$ne": None}})
        stored = await mongo[wms.db_name].workflows.count_documents({})
        await mongo.close()
    log(f"rest {rest['rate']}/s, floor {base['rate']}/s; {activated} of {stored} workflows activated by the end")

    figures = {"workflows/s": rest["rate"], "p50 ms": rest["p50_ms"], "p99 ms": rest["p99_ms"],
               "CPU ms/workflow (server side)": server_cpu_ms(rest, False)}  # fmt: skip
    floor = {"workflows/s": base["rate"], "p50 ms": base["p50_ms"], "p99 ms": base["p99_ms"],
             "CPU ms/workflow (server side)": server_cpu_ms(base, True)}  # fmt: skip
    ratio = round(figures["workflows/s"] / floor["workflows/s"], 3)
    emit(
        "rest-submit",
        figures,
        floor,
        "workflows/s >= 0.5 x floor at 16 clients",
        ratio >= 0.5 and rest["errors"] == 0,
        f"{CLIENTS} clients, each its own user; request = 2 tasks x 2 locations (4 taskforces, 3 queues); "
        f"{activated}/{stored} submitted workflows had their queues activated by the end of the run "
        f"(background work inside the WMS during the REST window); errors: {rest['errors']} "
        f"{list(rest['error_samples'])[:2]}. CPU ms/workflow (server side): WMS + nx-27017 for REST (the broker "
        "not counted), driver + nx-27017 for the floor.",
        ratio={"workflows/s": ratio},
        details={"rest": rest, "floor": base},
    )


if __name__ == "__main__":
    run(main)
