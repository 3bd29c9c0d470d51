"""Taskforce routes: read, retry, job logs."""

from __future__ import annotations

from wms.database.store import public
from wms.handlers.base import ANYONE, USERS, BaseHandler
from wms.operations.errors import found
from wms.progress import taskforce_view


class TaskforceUUIDHandler(BaseHandler):
    """``GET /v0/taskforces/{taskforce_uuid}``."""

    ROUTE = "/taskforces/{taskforce_uuid}"
    ROLES = {"GET": ANYONE}

    async def get(self, taskforce_uuid: str) -> None:
        """Return the taskforce with its rate and health (``wms.progress``)."""
        doc = await self.wms.store.taskforces.find_one({"taskforce_uuid": taskforce_uuid}, {"_id": False})
        doc = found(doc, "taskforce", f"uuid: {taskforce_uuid}", self.require_caller())
        self.send({**public(doc), **taskforce_view(doc, self.wms.config.tms_action_retries)})


class RetryHandler(BaseHandler):
    """``POST /v0/taskforces/{taskforce_uuid}/actions/retry``: a fresh taskforce for the same task and location."""

    ROUTE = "/taskforces/{taskforce_uuid}/actions/retry"
    ROLES = {"POST": USERS}

    async def post(self, taskforce_uuid: str) -> None:
        """Retry the failed taskforce (``wms.operations.taskforces``)."""
        self.send(public(await self.wms.operations.taskforces.retry(taskforce_uuid, self.require_caller())))


class TaskforceLogsHandler(BaseHandler):
    """``GET /v0/taskforces/{taskforce_uuid}/logs``: output tails of the taskforce's jobs (running ones growing)."""

    ROUTE = "/taskforces/{taskforce_uuid}/logs"
    ROLES = {"GET": ANYONE}

    async def get(self, taskforce_uuid: str) -> None:
        """The job logs, ordered by job id."""
        jobs = await self.wms.operations.taskforces.job_logs(taskforce_uuid, self.require_caller())
        self.send({"taskforce_uuid": taskforce_uuid, "jobs": jobs})
