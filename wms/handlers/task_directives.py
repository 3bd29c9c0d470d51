"""Task directive routes: read, add workers (``wms.operations.taskforces``)."""

from __future__ import annotations

from wms.database.store import public
from wms.handlers.base import ANYONE, USERS, BaseHandler
from wms.operations.errors import found


class TaskDirectiveIDHandler(BaseHandler):
    """``GET /v0/task-directives/{task_id}``."""

    ROUTE = "/task-directives/{task_id}"
    ROLES = {"GET": USERS}

    async def get(self, task_id: str) -> None:
        """Return the task directive."""
        doc = await self.wms.store.task_directives.find_one({"task_id": task_id}, {"_id": False})
        self.send(public(found(doc, "task directive", f"id: {task_id}", self.require_caller())))


class AddWorkersHandler(BaseHandler):
    """``POST /v0/task-directives/{task_id}/actions/add-workers``."""

    ROUTE = "/task-directives/{task_id}/actions/add-workers"
    ROLES = {"POST": ANYONE}

    async def post(self, task_id: str) -> None:
        """Create a taskforce for the task at a cluster location, with the settings of an existing one."""
        taskforce = await self.wms.operations.taskforces.add_workers(
            task_id, self.body["cluster_location"], int(self.body["n_workers"]), self.require_caller()
        )
        self.send(public(taskforce))
