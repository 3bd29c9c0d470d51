"""Bad input gets problem details with the right status, and nothing stored changes."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
from apiclient import Api, check_response
from factories import workflow_request


async def _counts(wms_server) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    store = wms_server.wms.store
    return (
        await store.workflows.count_documents({}),
        await store.task_directives.count_documents({}),
        await store.taskforces.count_documents({}),
    )


def _mutated(mutate) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    request = workflow_request()
    mutate(request)
    return request


BAD_REQUESTS = {
    "empty tasks": _mutated(lambda r: r.__setitem__("tasks", [])),
    "missing tasks": _mutated(lambda r: r.pop("tasks")),
    "unknown field": _mutated(lambda r: r.__setitem__("colour", "blue")),
    "unknown task field": _mutated(lambda r: r["tasks"][0].__setitem__("gpus", 1)),
    "wrong type": _mutated(lambda r: r["tasks"][0].__setitem__("n_workers", "many")),
    "zero workers": _mutated(lambda r: r["tasks"][0].__setitem__("n_workers", 0)),
    "duplicate aliases": _mutated(lambda r: r["tasks"][0].__setitem__("input_queue_aliases", ["in", "in"])),
    "duplicate public aliases": _mutated(lambda r: r.__setitem__("public_queue_aliases", ["in", "in"])),
    "bad alias": _mutated(lambda r: r["tasks"][0].__setitem__("input_queue_aliases", ["no spaces"])),
    "missing worker_config": _mutated(lambda r: r["tasks"][0].pop("worker_config")),
    "unknown location": _mutated(lambda r: r["tasks"][0].__setitem__("cluster_locations", ["mars"])),
    "reserved pilot env": _mutated(
        lambda r: r["tasks"][0].__setitem__("pilot_config", {"environment": {"EWMS_PILOT_TASK_ARGS": "rm -rf /"}})
    ),
    "negative priority": _mutated(lambda r: r.__setitem__("priority", -1)),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
async def test_invalid_workflow_requests_are_400_and_store_nothing(api: Api, wms_server, name: str) -> None:  # type: ignore[no-untyped-def]
    before = await _counts(wms_server)
    problem = await api.problem("POST", "/v0/workflows", copy.deepcopy(BAD_REQUESTS[name]), status=400)
    assert problem["type"] == "about:blank" and problem["title"] == "Bad Request"
    assert await _counts(wms_server) == before


async def test_malformed_json_and_wrong_content(api: Api, wms_server) -> None:  # type: ignore[no-untyped-def]
    before = await _counts(wms_server)
    for raw in (b"{not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"null"):
        problem = await api.problem("POST", "/v0/workflows", status=400, content=raw)
        assert "json" in problem["detail"].lower() or "body" in problem["detail"].lower()
    assert await _counts(wms_server) == before


async def test_oversized_body_is_413(api: Api, wms_server) -> None:  # type: ignore[no-untyped-def]
    request = workflow_request()
    request["tasks"][0]["task_args"] = "x" * (wms_server.config.max_body_bytes + 10)
    await api.problem("POST", "/v0/workflows", request, status=413)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v0/workflows/WF-1-00000000", 404),
        ("POST", "/v0/workflows/WF-1-00000000/actions/abort", 404),
        ("POST", "/v0/workflows/WF-1-00000000/actions/finished", 404),
        ("GET", "/v0/task-directives/TK-1-00000000-00000000", 404),
        ("GET", "/v0/taskforces/TF-1-00000000-00000000-00000000", 404),
        ("GET", "/v0/mqs/workflows/WF-1-00000000/mq-profiles/public", 404),
        ("GET", "/v0/workflows/not-an-id", 400),
        ("GET", "/v0/taskforces/../../etc", 404),
        ("GET", "/v0/no-such-route", 404),
    ],
)
async def test_unknown_ids_and_routes(api: Api, method: str, path: str, status: int) -> None:
    api.validate = not path.startswith(("/v0/no-such", "/v0/taskforces/.."))
    await api.problem(method, path, status=status)


async def test_tms_calls_with_bad_bodies_or_unknown_ids(api_as) -> None:  # type: ignore[no-untyped-def]
    from wms.auth import Role

    tms = api_as(Role.TMS, "tms")
    uuid = "TF-1-00000000-00000000-00000000"
    await tms.problem("GET", "/v0/tms/pending-starter/taskforces", status=400)  # schedd is required
    await tms.problem("POST", f"/v0/tms/condor-submit/taskforces/{uuid}", {"cluster_id": 1}, status=400)
    body = {"cluster_id": 1, "n_workers": 1, "submit_dict": {}, "job_event_log_fpath": "/x"}
    await tms.problem("POST", f"/v0/tms/condor-submit/taskforces/{uuid}", body, status=404)
    await tms.problem("POST", f"/v0/tms/condor-submit/taskforces/{uuid}/failed", {"error": "x"}, status=404)
    await tms.problem("POST", f"/v0/tms/condor-rm/taskforces/{uuid}/failed", {}, status=400)
    await tms.problem("POST", f"/v0/tms/condor-rm/taskforces/{uuid}", status=404)
    await tms.problem("POST", f"/v0/tms/condor-complete/taskforces/{uuid}", {"condor_complete_ts": "soon"}, status=400)
    await tms.problem("POST", "/v0/tms/statuses/taskforces", {"compound_statuses_by_taskforce": {uuid: {"RUNNING": 3}}})


async def test_health_metrics_and_schema(api: Api, wms_server, make_token) -> None:  # type: ignore[no-untyped-def]
    health = await api.ok("GET", "/v0/")
    assert health["status"] == "ok" and health["instance_id"] == wms_server.wms.instance_id
    await api.ok("POST", "/v0/workflows", workflow_request())
    schema = await api.ok("GET", "/v0/schema/openapi")
    assert schema["info"]["title"] == "EWMS Workflow Management Service"
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{wms_server.url}/metrics", headers={"Authorization": f"Bearer {make_token('admin', 'root')}"}
        )
    check_response(response)
    text = response.text
    assert 'ewms_wms_requests_total{method="POST",route="/workflows",status="200"} 1.0' in text
    assert 'ewms_wms_taskforces{phase="' in text and "ewms_wms_request_seconds_bucket" in text
