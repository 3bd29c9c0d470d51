"""Retention: deactivated workflows are archived then deleted with everything they own; admins list and purge."""

from __future__ import annotations

import asyncio
import time

from apiclient import Api
from factories import workflow_request

from wms.auth import Role


async def test_deactivated_workflows_are_archived_deleted_and_purged(start_wms, make_token) -> None:  # type: ignore[no-untyped-def]
    # RETENTION_DAYS=0: due as soon as deactivated (and its queues deleted: zero grace in tests)
    server = await start_wms(RETENTION_DAYS="0", RETENTION_INTERVAL_SECONDS="0.3", ARCHIVE_RETENTION_DAYS="1")
    user, admin = Api(server.url, make_token(Role.USER, "ivy")), Api(server.url, make_token(Role.ADMIN, "root"))
    keep = await user.ok("POST", "/v0/workflows", workflow_request())
    done = await user.ok("POST", "/v0/workflows", workflow_request(("test-alpha", "test-beta")))
    wid = done["workflow"]["workflow_id"]
    uuid = done["taskforces"][0]["taskforce_uuid"]
    job = {"job_id": "1.0", "stdout_tail": "", "stderr_tail": "", "task_error": "", "exit_code": 0, "ended_ts": 1.0}
    await Api(server.url, make_token(Role.TMS, "tms")).ok("POST", f"/v0/tms/logs/taskforces/{uuid}", {"jobs": [job]})
    await user.ok("POST", f"/v0/workflows/{wid}/actions/finished")
    deadline = time.monotonic() + 30
    while (await user.call("GET", f"/v0/workflows/{wid}")).status_code != 404:
        assert time.monotonic() < deadline, "workflow not archived"
        await asyncio.sleep(0.2)
    store = server.wms.store
    for coll in (store.task_directives, store.taskforces):
        assert await coll.count_documents({"workflow_id": wid}) == 0
    assert await store.task_logs.count_documents({"taskforce_uuid": uuid}) == 0
    assert await store.db["mq_profiles"].count_documents({"workflow_id": wid}) == 0
    await user.ok("GET", f"/v0/workflows/{keep['workflow']['workflow_id']}")  # the active one stays

    listing = await admin.ok("GET", "/v0/admin/archive/workflows")
    assert [w["workflow_id"] for w in listing["workflows"]] == [wid]
    assert listing["workflows"][0]["n_taskforces"] == 2 and listing["workflows"][0]["deactivated"] == "FINISHED"
    archived = await admin.ok("GET", f"/v0/admin/archive/workflows/{wid}")
    # the workflow's two queues and its failed-events queue
    assert len(archived["taskforces"]) == 2 and len(archived["mq_profiles"]) == 3
    assert all("auth_token" not in p for p in archived["mq_profiles"])
    await user.problem("GET", "/v0/admin/archive/workflows", status=403)
    await admin.problem("GET", "/v0/admin/archive/workflows/WF-1-00000000", status=404)
    await admin.problem("POST", "/v0/admin/archive/purge", {}, status=400)
    assert await admin.ok("POST", "/v0/admin/archive/purge", {"workflow_ids": [wid]}) == {"purged": [wid]}
    assert (await admin.ok("GET", "/v0/admin/archive/workflows"))["workflows"] == []
