"""kill -9 the WMS while 50 clients submit workflows; restart it on the same data: every workflow that got a 2xx
exists with all its task directives and taskforces, nothing is half-written, and the daemons carry them forward."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import httpx
from factories import workflow_request

from wms.auth import Role

CLIENTS = 50


async def _submitter(url: str, token: str, acknowledged: list[dict[str, Any]], stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {token}"}) as client:
        while not stop.is_set():
            try:
                response = await client.post(f"{url}/v0/workflows", json=workflow_request(("test-alpha", "test-beta")))
            except httpx.HTTPError:
                return  # the server is gone
            if response.status_code == 200:
                acknowledged.append(response.json())


async def test_kill_9_during_concurrent_submissions_loses_nothing_acknowledged(spawn_wms, make_token) -> None:  # type: ignore[no-untyped-def]
    token = make_token(Role.ADMIN, "crash-tester")
    first = spawn_wms(ORPHAN_GRACE_SECONDS="1", MAX_ACTIVE_WORKFLOWS_PER_USER="100000")
    acknowledged: list[dict[str, Any]] = []
    stop = asyncio.Event()
    clients = [asyncio.create_task(_submitter(first.url, token, acknowledged, stop)) for _ in range(CLIENTS)]
    deadline = time.monotonic() + 30
    while len(acknowledged) < 20:
        assert time.monotonic() < deadline, first.log.read_text()[-2000:]
        await asyncio.sleep(0.05)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    stop.set()
    await asyncio.gather(*clients)
    n_acknowledged = len(acknowledged)

    second = spawn_wms(ORPHAN_GRACE_SECONDS="1", MAX_ACTIVE_WORKFLOWS_PER_USER="100000")
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:

        async def query(kind: str, q: dict[str, Any]) -> list[dict[str, Any]]:
            items, body = [], {"query": q, "limit": 1000}
            while True:
                page = (await client.post(f"{second.url}/v0/query/{kind}", json=body)).json()
                items += page[kind.replace("-", "_")]
                if page["next_after"] is None:
                    return items
                body["after"] = page["next_after"]

        for created in acknowledged:
            wid = created["workflow"]["workflow_id"]
            assert (await client.get(f"{second.url}/v0/workflows/{wid}")).status_code == 200
            directives = await query("task-directives", {"workflow_id": wid})
            taskforces = await query("taskforces", {"workflow_id": wid})
            assert {d["task_id"] for d in directives} == {d["task_id"] for d in created["task_directives"]}
            assert {t["taskforce_uuid"] for t in taskforces} == {t["taskforce_uuid"] for t in created["taskforces"]}

        # nothing half-written survives: children whose workflow was never written are reaped
        deadline = time.monotonic() + 30
        while True:
            workflows = {w["workflow_id"] for w in await query("workflows", {})}
            orphans = [t for t in await query("taskforces", {}) if t["workflow_id"] not in workflows]
            orphans += [d for d in await query("task-directives", {}) if d["workflow_id"] not in workflows]
            if not orphans:
                break
            assert time.monotonic() < deadline, f"{len(orphans)} orphans left"
            await asyncio.sleep(0.5)

        # the daemons carry every acknowledged taskforce forward
        uuids = {t["taskforce_uuid"] for c in acknowledged for t in c["taskforces"]}
        deadline = time.monotonic() + 60
        while True:
            phases = {t["taskforce_uuid"]: t["phase"] for t in await query("taskforces", {})}
            waiting = [u for u in uuids if phases[u] != "pending-starter"]
            if not waiting:
                break
            assert time.monotonic() < deadline, f"{len(waiting)} of {len(uuids)} taskforces not released"
            await asyncio.sleep(0.5)
    assert n_acknowledged >= 20 and len(uuids) == 2 * n_acknowledged  # one task at two locations
