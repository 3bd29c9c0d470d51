"""The user routes of the WMS REST API (``/v0``): workflows, task directives, taskforces, queues, queries.

Example::

    async with WMSClient("http://localhost:8080", token) as wms:
        created = await wms.submit_workflow(request)
        profiles = await wms.wait_for_public_queues(created["workflow"]["workflow_id"], timeout=60)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import quote

from ewms_client.connection import Connection

QUERY_KINDS = ("workflows", "task-directives", "taskforces")


class WMSClient(Connection):
    """A user's calls; reads and queries are retried by the policy, creations and actions only when not sent."""

    # ---- workflows -----------------------------------------------------------------------------------------
    async def submit_workflow(self, request: dict[str, Any]) -> dict[str, Any]:
        """Create a workflow; the response has ``workflow``, ``task_directives`` and ``taskforces``."""
        result: dict[str, Any] = await self.request("POST", "/v0/workflows", request)
        return result

    async def get_workflow(self, workflow_id: str) -> dict[str, Any]:
        """One workflow."""
        result: dict[str, Any] = await self.request("GET", f"/v0/workflows/{_q(workflow_id)}")
        return result

    async def workflow_progress(self, workflow_id: str) -> dict[str, Any]:
        """A workflow's ``WorkflowProgress``: counters, rates and time left per task and taskforce, queue depths."""
        result: dict[str, Any] = await self.request("GET", f"/v0/workflows/{_q(workflow_id)}/progress")
        return result

    async def set_labels(self, workflow_id: str, labels: dict[str, str | None]) -> dict[str, Any]:
        """Set labels (a None value removes that label); the updated workflow."""
        path = f"/v0/workflows/{_q(workflow_id)}"
        result: dict[str, Any] = await self.request("PATCH", path, {"labels": labels}, idempotent=True)
        return result

    async def abort(self, workflow_id: str) -> dict[str, Any]:
        """Abort a workflow; ``n_taskforces`` tells how many taskforces this call sent to stop."""
        result: dict[str, Any] = await self.request("POST", f"/v0/workflows/{_q(workflow_id)}/actions/abort", {})
        return result

    async def finish(self, workflow_id: str) -> dict[str, Any]:
        """Mark a workflow finished; ``n_taskforces`` tells how many taskforces this call sent to stop."""
        result: dict[str, Any] = await self.request("POST", f"/v0/workflows/{_q(workflow_id)}/actions/finished", {})
        return result

    async def requeue_failed_events(self, workflow_id: str) -> dict[str, Any]:
        """Move the workflow's failed events back to the input queues they failed from; what moved and stayed."""
        path = f"/v0/workflows/{_q(workflow_id)}/actions/requeue-failed-events"
        result: dict[str, Any] = await self.request("POST", path, {})
        return result

    # ---- tasks and taskforces ------------------------------------------------------------------------------
    async def get_task_directive(self, task_id: str) -> dict[str, Any]:
        """One task directive."""
        result: dict[str, Any] = await self.request("GET", f"/v0/task-directives/{_q(task_id)}")
        return result

    async def get_taskforce(self, taskforce_uuid: str) -> dict[str, Any]:
        """One taskforce."""
        result: dict[str, Any] = await self.request("GET", f"/v0/taskforces/{_q(taskforce_uuid)}")
        return result

    async def retry(self, taskforce_uuid: str) -> dict[str, Any]:
        """Retry a failed taskforce; the new taskforce (its ``retry_of`` is ``taskforce_uuid``)."""
        path = f"/v0/taskforces/{_q(taskforce_uuid)}/actions/retry"
        result: dict[str, Any] = await self.request("POST", path, {})
        return result

    async def job_logs(self, taskforce_uuid: str) -> list[dict[str, Any]]:
        """The output tails of the taskforce's jobs (``ended_ts`` None while a job runs), ordered by job id."""
        result = await self.request("GET", f"/v0/taskforces/{_q(taskforce_uuid)}/logs")
        jobs: list[dict[str, Any]] = result["jobs"]
        return jobs

    async def add_workers(self, task_id: str, location: str, n_workers: int) -> dict[str, Any]:
        """Create one more taskforce of ``n_workers`` for the task at ``location``; the new taskforce."""
        body = {"cluster_location": location, "n_workers": n_workers}
        path = f"/v0/task-directives/{_q(task_id)}/actions/add-workers"
        result: dict[str, Any] = await self.request("POST", path, body)
        return result

    async def taskforces_of(self, workflow_id: str) -> list[dict[str, Any]]:
        """Every taskforce of a workflow, oldest first."""
        return [tf async for tf in self.query("taskforces", {"workflow_id": workflow_id})]

    # ---- queues --------------------------------------------------------------------------------------------
    async def public_queues(self, workflow_id: str) -> list[dict[str, Any]]:
        """The workflow's public queue profiles (``auth_token`` is null until ``is_activated``)."""
        path = f"/v0/mqs/workflows/{_q(workflow_id)}/mq-profiles/public"
        result = await self.request("GET", path)
        profiles: list[dict[str, Any]] = result["mqprofiles"]
        return profiles

    async def wait_for_public_queues(
        self,
        workflow_id: str,
        timeout: float,  # noqa: ASYNC109 (a polling deadline, not a cancellation scope)
        interval: float = 0.5,
    ) -> list[dict[str, Any]]:
        """Poll until every public queue is activated; raise :class:`TimeoutError` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            profiles = await self.public_queues(workflow_id)
            if all(p["is_activated"] for p in profiles):
                return profiles
            left = deadline - time.monotonic()
            if left <= 0:
                waiting = ", ".join(p["alias"] for p in profiles if not p["is_activated"])
                raise TimeoutError(f"queues of {workflow_id} not activated within {timeout:g} s: {waiting}")
            await asyncio.sleep(min(interval, left))

    # ---- queries -------------------------------------------------------------------------------------------
    async def query(
        self,
        kind: str,
        query: dict[str, Any],
        projection: list[str] | None = None,
        limit: int | None = None,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Yield every object of ``kind`` (workflows, task-directives, taskforces) matching the MongoDB filter
        ``query``, following ``next_after`` across pages of at most ``limit`` objects (server default if None)."""
        if kind not in QUERY_KINDS:
            raise ValueError(f"unknown query kind {kind!r} (one of: {', '.join(QUERY_KINDS)})")
        body: dict[str, Any] = {"query": query}
        if projection:
            body["projection"] = projection
        if limit is not None:
            body["limit"] = limit
        key = kind.replace("-", "_")
        while True:
            page = await self.request("POST", f"/v0/query/{kind}", body, idempotent=True)
            for item in page[key]:
                yield item
            if page["next_after"] is None:
                return
            body["after"] = page["next_after"]


def _q(segment: str) -> str:
    """Quote an id for use as one path segment."""
    return quote(segment, safe="")
