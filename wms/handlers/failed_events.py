"""``POST /v0/workflows/{workflow_id}/actions/requeue-failed-events``: one call into ``operations.failed_events``."""

from __future__ import annotations

from wms.handlers.base import USERS, BaseHandler


class RequeueFailedEventsHandler(BaseHandler):
    """Move the workflow's failed events back to the input queues they failed from."""

    ROUTE = "/workflows/{workflow_id}/actions/requeue-failed-events"
    ROLES = {"POST": USERS}

    async def post(self, workflow_id: str) -> None:
        """Requeue, and say how many moved where and how many stayed."""
        self.send(await self.wms.operations.failed_events.requeue(workflow_id, self.require_caller()))
