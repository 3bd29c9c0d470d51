"""Issue 15 points 2 and 4, issue 18 point 2 on the WMS side: what the TMS is handed for the pilots (the
failed-events queue and a pilot credential), the pilots' token route, requeueing failed events, and elastic workers.

The real WMS (REST, daemons, embedded MQS) on the session database and broker; the TMS's calls are made with a TMS
token, and events are moved with pika the way pilots and users move them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import jwt
import zstd
from factories import one_task_workflow
from mqs_helpers import connect, pika_get, pika_publish

from ewms_dev.processes import until
from mqs_client import FAILED_EVENTS_ALIAS
from wms.auth import Role
from wms.daemons import elastic_workers
from wms.daemons.elastic_workers import ElasticWorkers

TOKEN_ROUTE = "/v0/mqs/workflows/{wid}/queues/{queue}/token"


def envelope(data: Any, **headers: Any) -> bytes:
    """An oms-mqclient envelope, as users and pilots send them."""
    return bytes(zstd.compress(json.dumps({"headers": headers, "data": data}).encode()))


def opened(body: bytes) -> dict[str, Any]:
    return dict(json.loads(zstd.decompress(body)))


async def submitted(api: Any, tms: Any) -> tuple[str, dict[str, Any]]:
    """A one-task workflow at ``local`` whose taskforce the (simulated) TMS is offered; its id and the offer (the
    test's other workflows' taskforces were offered before, or are never started)."""
    created = await api.ok("POST", "/v0/workflows", one_task_workflow("cp {{INFILE}} {{OUTFILE}}", 2, sys.prefix))
    wid = created["workflow"]["workflow_id"]
    offer = await until(
        lambda: tms.ok("GET", "/v0/tms/pending-starter/taskforces", params={"schedd": "local-ap.test"}),
        lambda offer: offer and offer["taskforce"]["workflow_id"] == wid,
        20,
        "a pending-starter taskforce",
    )
    return wid, offer


async def test_the_tms_gets_the_failed_events_queue_and_a_pilot_credential(api, api_as, make_token) -> None:
    tms = api_as(Role.TMS, "tms")
    wid, offer = await submitted(api, tms)
    failed = [p for p in offer["mqprofiles"] if p["alias"] == FAILED_EVENTS_ALIAS]
    assert len(failed) == 1 and failed[0]["is_activated"] and failed[0]["auth_token"]
    claims = jwt.decode(offer["pilot_credential"], options={"verify_signature": False})
    assert claims["ewms_role"] == "pilot" and claims["workflow_id"] == wid
    # longer than a pilot runs (max_worker_runtime 600 s) plus the time its job may wait in the scheduler
    assert claims["exp"] - claims["iat"] > offer["taskforce"]["worker_config"]["max_worker_runtime"]


async def test_a_pilot_credential_renews_its_workflows_queue_tokens_only(api, api_as, wms_server) -> None:
    tms = api_as(Role.TMS, "tms")
    wid, offer = await submitted(api, tms)
    pilot = api_as(None)
    pilot.token = offer["pilot_credential"]
    queue = offer["task_directive"]["input_queues"][0]
    profile = next(p for p in offer["mqprofiles"] if p["mqid"] == queue)

    fresh = await pilot.ok("POST", TOKEN_ROUTE.format(wid=wid, queue=queue))
    assert fresh["mqid"] == queue
    tokens = (profile["auth_token"], fresh["auth_token"])
    old, new = (jwt.decode(t, options={"verify_signature": False}) for t in tokens)
    assert new["sub"] == old["sub"] and new["exp"] >= old["exp"]
    # the fresh token opens the queue on the broker
    await asyncio.to_thread(pika_publish, profile["broker_address"], fresh["auth_token"], queue, envelope("x"))

    other = await api.ok("POST", "/v0/workflows", one_task_workflow("cp {{INFILE}} {{OUTFILE}}", 1, sys.prefix))
    other_wid, other_queue = other["workflow"]["workflow_id"], other["task_directives"][0]["input_queues"][0]
    await pilot.problem("POST", TOKEN_ROUTE.format(wid=other_wid, queue=other_queue), status=403)
    await pilot.problem("POST", TOKEN_ROUTE.format(wid=wid, queue=other_queue), status=404)
    await pilot.problem("POST", TOKEN_ROUTE.format(wid=wid, queue="a0000000000000000000f"), status=404)
    for caller in (api, tms, api_as(Role.ADMIN, "root")):  # no other token holds the pilot role here
        await caller.problem("POST", TOKEN_ROUTE.format(wid=wid, queue=queue), status=403)
    # nor a user token claiming the role: pilot credentials have an audience of their own
    await api_as(Role.PILOT, "mallory").problem("POST", TOKEN_ROUTE.format(wid=wid, queue=queue), status=403)
    await api.ok("POST", f"/v0/workflows/{wid}/actions/finished")
    await pilot.problem("POST", TOKEN_ROUTE.format(wid=wid, queue=queue), status=409)


async def test_requeue_moves_failed_events_back_to_their_input_queue(api, api_as) -> None:
    tms = api_as(Role.TMS, "tms")
    wid, offer = await submitted(api, tms)
    failed = next(p for p in offer["mqprofiles"] if p["alias"] == FAILED_EVENTS_ALIAS)
    queue = offer["task_directive"]["input_queues"][0]
    address, token = failed["broker_address"], failed["auth_token"]
    error = {"error": "task failed (exit code 3): bad", "input_queue": queue, "exit_code": 3}
    for body in (
        envelope("fixed", **{"ewms-failed": error, "trace": 1}),
        envelope("elsewhere", **{"ewms-failed": {**error, "input_queue": "a0000000000000000000f"}}),
        b"not an envelope",
    ):
        await asyncio.to_thread(pika_publish, address, token, failed["mqid"], body)

    result = await api.ok("POST", f"/v0/workflows/{wid}/actions/requeue-failed-events")
    assert result == {"workflow_id": wid, "n_requeued": 1, "requeued_by_queue": {queue: 1}, "n_kept": 2}
    input_profile = next(p for p in offer["mqprofiles"] if p["mqid"] == queue)
    moved = opened(await asyncio.to_thread(pika_get, address, input_profile["auth_token"], queue))
    assert moved == {"headers": {"trace": 1}, "data": "fixed"}
    with connect(address, token) as conn:  # the two it could not place are still there
        assert conn.channel().queue_declare(failed["mqid"], passive=True).method.message_count == 2

    await api_as(Role.USER, "mallory").problem("POST", f"/v0/workflows/{wid}/actions/requeue-failed-events", status=404)
    await api.ok("POST", f"/v0/workflows/{wid}/actions/abort")
    await api.problem("POST", f"/v0/workflows/{wid}/actions/requeue-failed-events", status=422)


async def test_elastic_workers_start_a_taskforce_for_unconsumed_events(api, api_as, wms_server) -> None:
    tms = api_as(Role.TMS, "tms")
    wid, offer = await submitted(api, tms)
    first = offer["taskforce"]["taskforce_uuid"]
    wms = wms_server.wms
    elastic = ElasticWorkers(wms.store, wms.mqs, wms.operations.taskforces, wms.config)
    queue = offer["task_directive"]["input_queues"][0]
    profile = next(p for p in offer["mqprofiles"] if p["mqid"] == queue)
    await asyncio.to_thread(pika_publish, profile["broker_address"], profile["auth_token"], queue, envelope("late"))

    async def taskforces() -> list[dict[str, Any]]:
        return [tf async for tf in _query(api, wid)]

    # events wait with no consumer, but the first taskforce is live (not yet started): nothing is added
    await until(lambda: wms.mqs.queue_depths(wid), lambda ds: any(d.ready for d in ds), 30, "broker figures")
    await elastic.one_pass()
    assert [tf["taskforce_uuid"] for tf in await taskforces()] == [first]

    # its pilots ran and ended: the next pass adds one taskforce, with the task's workers, as the TMS would
    await tms.ok("POST", f"/v0/tms/condor-submit/taskforces/{first}", _submitted(1))
    await tms.ok("POST", f"/v0/tms/condor-complete/taskforces/{first}", {"condor_complete_ts": 1.0})
    await elastic.one_pass()
    added = [tf for tf in await taskforces() if tf["taskforce_uuid"] != first]
    assert len(added) == 1 and added[0]["n_workers"] == 2 and added[0]["cluster_location"] == "local"
    assert added[0]["phase_change_log"][0]["source_entity"] == "TMS"

    # rate-limited per task: it ended too, events still wait, but the gap has not passed
    uuid = added[0]["taskforce_uuid"]
    await until(lambda: tms.ok("GET", f"/v0/taskforces/{uuid}"), lambda tf: tf["phase"] == "pending-starter", 20)
    await tms.ok("POST", f"/v0/tms/condor-submit/taskforces/{uuid}", _submitted(2))
    await tms.ok("POST", f"/v0/tms/condor-complete/taskforces/{uuid}", {"condor_complete_ts": 1.0})
    await elastic.one_pass()
    assert len(await taskforces()) == 2

    # never for a deactivated workflow
    await api.ok("POST", f"/v0/workflows/{wid}/actions/finished")
    elastic.config = type(wms.config)(**{**wms.config.__dict__, "elastic_min_gap_seconds": 0.0})
    await elastic.one_pass()
    assert len(await taskforces()) == 2


async def test_elastic_workers_look_at_every_active_workflow_page_by_page(
    api, api_as, wms_server, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(elastic_workers, "PAGE", 1)  # every other active workflow of this database is a page before
    tms = api_as(Role.TMS, "tms")
    wms = wms_server.wms
    elastic = ElasticWorkers(wms.store, wms.mqs, wms.operations.taskforces, wms.config)
    stranded = []
    for n in range(2):
        wid, offer = await submitted(api, tms)
        first = offer["taskforce"]["taskforce_uuid"]
        queue = offer["task_directive"]["input_queues"][0]
        profile = next(p for p in offer["mqprofiles"] if p["mqid"] == queue)
        await asyncio.to_thread(pika_publish, profile["broker_address"], profile["auth_token"], queue, envelope("x"))
        await tms.ok("POST", f"/v0/tms/condor-submit/taskforces/{first}", _submitted(10 + n))
        await tms.ok("POST", f"/v0/tms/condor-complete/taskforces/{first}", {"condor_complete_ts": 1.0})
        await until(lambda wid=wid: wms.mqs.queue_depths(wid), lambda ds: any(d.ready for d in ds), 30, "figures")
        stranded.append(wid)
    figures = await wms.mqs.queue_depths_of([*stranded, "WF-unknown-00000000"])  # one broker read for both
    assert sorted(figures) == sorted(stranded) and all(any(d.ready for d in ds) for ds in figures.values())

    await elastic.one_pass()
    for wid in stranded:
        assert len([tf async for tf in _query(api, wid)]) == 2, wid  # each got one taskforce more


def _submitted(cluster_id: int) -> dict[str, Any]:
    return {"cluster_id": cluster_id, "n_workers": 2, "submit_dict": {}, "job_event_log_fpath": "/tmp/x.jel"}


async def _query(api: Any, wid: str) -> Any:
    page = await api.ok("POST", "/v0/query/taskforces", {"query": {"workflow_id": wid}})
    for tf in page["taskforces"]:
        yield tf
