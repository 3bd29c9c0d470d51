"""Progress and health: counters the TMS reports are stored, returned with the taskforce, and summed per task with
the broker's queue depths at ``GET /v0/workflows/{id}/progress``; failing and failed taskforces and workflows are
told apart from healthy ones. Responses are checked against Docs/openapi.json."""

from __future__ import annotations

from typing import Any

import pika
from apiclient import Api
from factories import workflow_request
from test_workflow_lifecycle import ALPHA, BETA, start_jobs, wait_for_phase

from ewms_dev import processes
from ewms_dev.factories import taskforce
from mqs_client import RemoteMQS
from mqs_client.config import MQSConfig
from wms.auth import Caller, Role
from wms.operations.progress import Progress
from wms.progress import FAILED, FAILING, OK, SAMPLE_SPACING, counters_update, health, overall, rate

TMS_ROUTE = "/v0/tms/statuses/taskforces"


async def two_locations(api: Api, api_as) -> tuple[dict[str, Any], str, str, Api]:  # type: ignore[no-untyped-def]
    """A one-task workflow at alpha and beta, both taskforces submitted; (workflow, alpha uuid, beta uuid, TMS)."""
    created = await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha", "test-beta")))
    uuids = [tf["taskforce_uuid"] for tf in created["taskforces"]]
    await wait_for_phase(api, uuids, "pending-starter")
    tms = api_as(Role.TMS, "tms")
    alpha = (await start_jobs(tms, ALPHA, 101))["taskforce"]["taskforce_uuid"]
    beta = (await start_jobs(tms, BETA, 202))["taskforce"]["taskforce_uuid"]
    return created["workflow"], alpha, beta, tms


def publish(profile: dict[str, Any], n: int) -> None:
    """Publish ``n`` events to a public queue with its own token (confirmed)."""
    where, _, vhost = profile["broker_address"].partition("/")
    host, port = where.rsplit(":", 1)
    params = pika.ConnectionParameters(
        host, int(port), virtual_host=vhost, credentials=pika.PlainCredentials("", profile["auth_token"])
    )
    with pika.BlockingConnection(params) as conn:
        channel = conn.channel()
        channel.confirm_delivery()
        for i in range(n):
            channel.basic_publish("", profile["mqid"], f'{{"n": {i}}}'.encode())


async def test_reported_counters_are_stored_and_summed_per_task_with_queue_depths(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    workflow, alpha, beta, tms = await two_locations(api, api_as)
    wf_id = workflow["workflow_id"]
    report = {
        "compound_statuses_by_taskforce": {alpha: {"RUNNING": {"Tasking": 3}}, beta: {"RUNNING": {"Tasking": 3}}},
        "event_counters_by_taskforce": {
            alpha: {"done": 0, "failed": 0, "in_flight": 0},
            beta: {"done": 0, "failed": 0, "in_flight": 0},
        },
    }
    await tms.ok("POST", TMS_ROUTE, report)
    later = {"event_counters_by_taskforce": {alpha: {"done": 40, "failed": 2, "in_flight": 3}}}
    assert (await tms.ok("POST", TMS_ROUTE, later))["results"] == [{"uuid": alpha, "status": "updated"}]

    doc = await api.ok("GET", f"/v0/taskforces/{alpha}")
    assert {k: doc["event_counters"][k] for k in ("done", "failed", "in_flight")} == {
        "done": 40, "failed": 2, "in_flight": 3,
    }  # fmt: skip
    assert doc["compound_statuses"] == {"RUNNING": {"Tasking": 3}}  # a counters-only report leaves statuses alone
    assert doc["event_rate"] > 0 and (doc["health"], doc["health_reason"]) == (OK, None)
    assert not any(key.startswith("_") for key in doc)

    profiles = (await api.ok("GET", f"/v0/mqs/workflows/{wf_id}/mq-profiles/public"))["mqprofiles"]
    publish(next(p for p in profiles if p["alias"] == "in"), 7)
    # the broker's statistics lag by about 5 s, and it may publish a queue's depth before its consumer count
    progress = await processes.until(  # liveness bound: 60 s
        lambda: api.ok("GET", f"/v0/workflows/{wf_id}/progress"),
        lambda p: p["tasks"][0]["waiting"] == 7 and p["tasks"][0]["consumers"] is not None,
        60,
    )
    assert progress["queue_depths_available"] and progress["health"] == OK
    (task,) = progress["tasks"]
    assert task["input_queues"] == ["in"] and task["consumers"] == 0
    assert (task["done"], task["failed"], task["in_flight"], task["waiting"]) == (40, 2, 3, 7)
    assert task["rate"] > 0 and task["eta_seconds"] == (7 + 3) / task["rate"]
    by_uuid = {tf["taskforce_uuid"]: tf for tf in task["taskforces"]}
    assert (by_uuid[beta]["done"], by_uuid[beta]["rate"], by_uuid[beta]["updated_ts"] is not None) == (0, 0.0, True)
    assert {q["alias"] for q in progress["queues"]} == {"in", "out", "@failed-events"}

    await api_as(Role.USER, "mallory").problem("GET", f"/v0/workflows/{wf_id}/progress", status=404)
    await api.problem("GET", "/v0/workflows/WF-0-00000000/progress", status=404)


async def test_failing_and_failed_taskforces_and_workflows(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    workflow, alpha, beta, tms = await two_locations(api, api_as)
    wf_id = workflow["workflow_id"]
    fatal = "pilot failed: cannot pull the task image"
    await tms.ok(
        "POST",
        TMS_ROUTE,
        {
            "compound_statuses_by_taskforce": {alpha: {"RUNNING": {"Tasking": 2}, "COMPLETED": {"FatalError": 1}}},
            "top_task_errors_by_taskforce": {alpha: {fatal: 1}},
        },
    )
    doc = await api.ok("GET", f"/v0/taskforces/{alpha}")
    assert doc["health"] == FAILING and fatal in doc["health_reason"] and "1 of 3 workers" in doc["health_reason"]
    assert (await api.ok("GET", f"/v0/workflows/{wf_id}"))["health"] == OK  # beta is fine

    await tms.ok("POST", TMS_ROUTE, {"compound_statuses_by_taskforce": {alpha: {"COMPLETED": {"FatalError": 3}}}})
    await tms.ok("POST", TMS_ROUTE, {"compound_statuses_by_taskforce": {beta: {"HELD: memory": {"Tasking": 1}}}})
    alpha_doc, beta_doc = [await api.ok("GET", f"/v0/taskforces/{u}") for u in (alpha, beta)]
    assert (alpha_doc["health"], beta_doc["health"]) == (FAILED, FAILED)
    assert "all 3 workers" in alpha_doc["health_reason"] and "HELD: memory" in beta_doc["health_reason"]
    wf = await api.ok("GET", f"/v0/workflows/{wf_id}")
    assert wf["health"] == FAILED and wf["health_reason"].startswith("all 2 taskforces failed")
    progress = await api.ok("GET", f"/v0/workflows/{wf_id}/progress")
    assert progress["health"] == FAILED and progress["tasks"][0]["health"] == FAILED

    await tms.ok("POST", TMS_ROUTE, {"compound_statuses_by_taskforce": {beta: {"RUNNING": {"Tasking": 1}}}})
    assert (await api.ok("GET", f"/v0/workflows/{wf_id}"))["health"] == OK
    progress = await api.ok("GET", f"/v0/workflows/{wf_id}/progress")
    views = {tf["taskforce_uuid"]: tf for tf in progress["tasks"][0]["taskforces"]}
    assert (views[alpha]["retryable"], views[beta]["retryable"]) == (True, False)  # beta runs again
    retried = await api.ok("POST", f"/v0/taskforces/{alpha}/actions/retry")  # the retry replaces the failed one
    progress = await api.ok("GET", f"/v0/workflows/{wf_id}/progress")
    views = {tf["taskforce_uuid"]: tf for tf in progress["tasks"][0]["taskforces"]}
    assert views[alpha]["retried_as"] == retried["taskforce_uuid"] and views[alpha]["health"] == FAILED
    assert progress["health"] == OK
    assert (views[alpha]["retryable"], views[retried["taskforce_uuid"]]["retryable"]) == (False, False)
    await api.problem("POST", f"/v0/taskforces/{retried['taskforce_uuid']}/actions/retry", status=409)  # not failed
    await api.ok("POST", f"/v0/workflows/{wf_id}/actions/finished")
    progress = await api.ok("GET", f"/v0/workflows/{wf_id}/progress")
    assert not any(tf["retryable"] for tf in progress["tasks"][0]["taskforces"])  # nothing under a finished workflow


async def test_a_given_up_submit_is_failed_with_its_error(api: Api, api_as, wms_server) -> None:  # type: ignore[no-untyped-def]
    created = await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha",)))
    uuid, wf_id = created["taskforces"][0]["taskforce_uuid"], created["workflow"]["workflow_id"]
    await wait_for_phase(api, [uuid], "pending-starter")
    tms = api_as(Role.TMS, "tms")
    for attempt in range(wms_server.config.tms_action_retries + 1):
        assert (await api.ok("GET", f"/v0/taskforces/{uuid}"))["health"] == OK, attempt
        await tms.ok("POST", f"/v0/tms/condor-submit/taskforces/{uuid}/failed", {"error": f"no memory ({attempt})"})
    doc = await api.ok("GET", f"/v0/taskforces/{uuid}")
    assert doc["health"] == FAILED and doc["health_reason"].endswith("no memory (2)")
    wf = await api.ok("GET", f"/v0/workflows/{wf_id}")
    assert wf["health"] == FAILED and "submit given up after 3 failed attempts" in wf["health_reason"]


async def test_a_remote_mqs_gives_progress_without_depths(api: Api, wms_server) -> None:  # type: ignore[no-untyped-def]
    created = await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha",)))
    wf_id = created["workflow"]["workflow_id"]
    wms = wms_server.wms
    remote = RemoteMQS(MQSConfig.from_env({"MQS_ADDRESS": "http://127.0.0.1:9", "MQS_STATIC_TOKEN": "t"}))
    try:
        owner = Caller(subject=created["workflow"]["owner"], roles=frozenset({Role.USER}))
        progress = await Progress(wms.store, remote, wms.config).workflow(wf_id, owner)
    finally:
        await remote.close()
    assert progress["queue_depths_available"] is False and progress["queues"] == []
    assert progress["tasks"][0]["waiting"] is None and progress["tasks"][0]["eta_seconds"] is None


def test_rate_is_over_the_last_minute_from_spaced_samples() -> None:
    doc: dict[str, Any] = {}
    for t, done in ((0.0, 0), (2.0, 5), (10.0, 20), (70.0, 80), (100.0, 110)):
        update = counters_update({"done": done, "failed": 0, "in_flight": 1}, doc.get("_rate_ts", []), t)
        doc["event_counters"] = update["$set"]["event_counters"]
        for field, push in update.get("$push", {}).items():
            doc[field] = (doc.get(field, []) + push["$each"])[push["$slice"] :]
    assert doc["_rate_ts"] == [0.0, 10.0, 70.0, 100.0]  # 2.0 came within SAMPLE_SPACING of 0.0
    assert SAMPLE_SPACING == 5.0
    assert rate(doc, 100.0) == (110 - 20) / 90  # the latest sample at least a minute old is at 10 s
    assert rate(doc, 200.0) == 0.0  # nothing settled in the last minute
    assert rate({}, 5.0) == 0.0


def test_health_rules() -> None:
    def tf(**fields: Any) -> dict[str, Any]:
        return {"phase": "condor-submit", "compound_statuses": {}, "top_task_errors": {}, **fields}

    assert health(tf(compound_statuses={"COMPLETED": {"Done": 3}}), 2) == (OK, None)
    assert health(tf(compound_statuses={"REMOVED": {"Tasking": 3}}), 2) == (OK, None)  # removed when finished
    assert health(tf(compound_statuses={"COMPLETED": {"FatalError": 1, "Done": 1}}), 2)[0] == FAILING
    assert health(tf(phase="pending-starter", _submit_failures=2), 2) == (OK, None)
    assert health(tf(phase="pending-starter", _submit_failures=3), 2)[0] == FAILED
    assert overall([], "taskforces") == (OK, None)
    assert overall([(FAILING, "a"), (FAILED, "b")], "taskforces") == (FAILING, "all 2 taskforces failing: a")
    assert overall([(FAILING, "a"), (OK, None)], "taskforces") == (OK, None)



async def test_a_report_over_several_write_chunks_names_exactly_the_unknown_uuids(api_as, wms_server) -> None:  # type: ignore[no-untyped-def]
    store = wms_server.wms.store
    known = [f"TF-chunks-{n:02d}" for n in range(60)]
    await store.taskforces.insert_many([taskforce(uuid) for uuid in known])
    lost = ["TF-chunks-lost-1", "TF-chunks-lost-2", "TF-chunks-lost-3"]
    uuids = known[:10] + lost[:1] + known[10:40] + lost[1:2] + known[40:]  # an unknown one in the 1st and 2nd chunk
    report = {
        "compound_statuses_by_taskforce": {u: {"RUNNING": {"Tasking": 1}} for u in uuids},
        "event_counters_by_taskforce": {u: {"done": 1, "failed": 0, "in_flight": 1} for u in [known[0], lost[2]]},
    }
    answer = await api_as(Role.TMS, "tms").ok("POST", TMS_ROUTE, report, status=207)
    failed = [r["uuid"] for r in answer["results"] if r["status"] == "failed"]
    assert sorted(failed) == sorted(lost) and len(answer["results"]) == len(uuids) + 1
    stored = {d["taskforce_uuid"]: d for d in await store.taskforces.find({"taskforce_uuid": {"$in": known}}).to_list()}
    assert all(stored[u]["compound_statuses"] == {"RUNNING": {"Tasking": 1}} for u in known)
    assert stored[known[0]]["event_counters"]["done"] == 1
