"""The database stops for 10 s under a running WMS process: every route that needs it answers 503 problem details
(never 500) while it is down, and the service recovers by itself when it returns (requests and daemons)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from apiclient import Api
from factories import one_task_workflow

from ewms_dev import mongo_server as embedded
from ewms_dev.processes import free_port, until
from wms.auth import Role

OUTAGE_SECONDS = 10.0
SCHEDD = "local-ap.test"


def requests_needing_the_database(workflow_id: str, task_id: str, uuid: str) -> list[tuple[str, str, str, Any]]:
    """(caller, method, path, body) of the routes that read or write the database."""
    query = {"query": {"workflow_id": workflow_id}}
    add_workers = {"cluster_location": "local", "n_workers": 1}
    statuses = {"compound_statuses_by_taskforce": {uuid: {"RUNNING": {"Tasking": 1}}}}
    return [
        ("anyone", "GET", "/v0/", None),
        ("admin", "GET", "/metrics", None),
        ("user", "GET", f"/v0/workflows/{workflow_id}", None),
        ("user", "GET", f"/v0/taskforces/{uuid}", None),
        ("user", "GET", f"/v0/task-directives/{task_id}", None),
        ("user", "GET", f"/v0/mqs/workflows/{workflow_id}/mq-profiles/public", None),
        ("user", "POST", "/v0/workflows", one_task_workflow("sleep", 1)),
        ("user", "POST", "/v0/query/workflows", query),
        ("user", "POST", "/v0/query/task-directives", query),
        ("user", "POST", "/v0/query/taskforces", query),
        ("user", "PATCH", f"/v0/workflows/{workflow_id}", {"labels": {"during": "outage"}}),
        ("user", "POST", f"/v0/task-directives/{task_id}/actions/add-workers", add_workers),
        ("tms", "GET", f"/v0/tms/pending-starter/taskforces?schedd={SCHEDD}", None),
        ("tms", "GET", f"/v0/tms/pending-stopper/taskforces?schedd={SCHEDD}", None),
        ("tms", "POST", "/v0/tms/statuses/taskforces", statuses),
        ("tms", "POST", f"/v0/tms/condor-submit/taskforces/{uuid}/failed", {"error": "test"}),
    ]


async def test_database_outage_gives_503_then_recovers(spawn_wms, make_token, tmp_path: Path, figures) -> None:
    port = free_port()
    mongo = embedded.start(tmp_path / "mongo", port=port)
    try:
        wms = spawn_wms(MONGODB_URI=mongo.uri, METRICS_REFRESH_SECONDS="0")  # no cached counts during the outage
        clients = {
            "anyone": Api(wms.url, None, validate=False),
            "user": Api(wms.url, make_token(Role.USER, "alice")),
            "tms": Api(wms.url, make_token(Role.TMS, "tms")),
            "admin": Api(wms.url, make_token(Role.ADMIN, "root")),
        }
        user = clients["user"]
        created = await user.ok("POST", "/v0/workflows", one_task_workflow("sleep", 1))
        workflow_id = created["workflow"]["workflow_id"]
        uuid = created["taskforces"][0]["taskforce_uuid"]
        task_id = created["taskforces"][0]["task_id"]
        table = requests_needing_the_database(workflow_id, task_id, uuid)

        async def phase_of(taskforce_uuid: str) -> str:
            return str((await user.ok("GET", f"/v0/taskforces/{taskforce_uuid}"))["phase"])

        # the TMS calls in the table need the taskforce released to the TMS before the outage
        await until(lambda: phase_of(uuid), lambda p: p == "pending-starter", 30, "pending-starter before")

        async def send(caller: str, method: str, path: str, body: Any) -> httpx.Response:
            return await clients[caller].call(method, path, body)

        embedded.stop(mongo)
        down_since = time.monotonic()
        answers: list[tuple[str, httpx.Response]] = []
        while time.monotonic() - down_since < OUTAGE_SECONDS:
            round_ = await asyncio.gather(*(send(*request) for request in table))
            answers += [(f"{method} {path}", r) for (_, method, path, _), r in zip(table, round_, strict=True)]
        mongo = embedded.start(tmp_path / "mongo", port=port)
        up_since = time.monotonic()

        by_status = Counter(r.status_code for _, r in answers)
        assert set(by_status) == {503}, [(route, r.status_code, r.text) for route, r in answers if r.status_code != 503]
        for route, response in answers:
            assert response.headers["content-type"].startswith("application/problem+json"), route
            assert response.json()["status"] == 503 and "database" in response.json()["detail"], route
            assert response.headers.get("Retry-After") == "5", route

        # recovery: no restart, the same requests succeed
        await until(lambda: send("anyone", "GET", "/v0/", None), lambda r: r.status_code == 200, 30, "health")
        recovered_after = time.monotonic() - up_since
        for caller, method, path, body in table:
            response = await send(caller, method, path, body)
            assert response.status_code in (200, 207), (method, path, response.status_code, response.text)
        # the daemons carry on: a workflow submitted now is activated and launched
        again = await user.ok("POST", "/v0/workflows", one_task_workflow("sleep", 1))

        new_uuid = again["taskforces"][0]["taskforce_uuid"]
        await until(lambda: phase_of(new_uuid), lambda p: p == "pending-starter", 30, "pending-starter after")
        assert wms.proc.poll() is None
        assert "Uncaught exception" not in wms.log.read_text()
        figures.update(
            faults_injected=1,
            outage_seconds=round(up_since - down_since, 1),
            requests_during_outage=len(answers),
            answers_during_outage={str(k): v for k, v in by_status.items()},
            server_errors=sum(v for k, v in by_status.items() if k >= 500 and k != 503),
            recovered_after_seconds=round(recovered_after, 2),
        )
    finally:
        embedded.stop(mongo)
