"""Workflow routes: create, read, label, abort, finish (each one call into ``wms.operations.workflows``)."""

from __future__ import annotations

from wms.database.store import ABORTED, FINISHED, public
from wms.handlers.base import USERS, BaseHandler


class WorkflowsHandler(BaseHandler):
    """``POST /v0/workflows``: a request becomes a workflow, its task directives and taskforces."""

    ROUTE = "/workflows"
    ROLES = {"POST": USERS}

    async def post(self) -> None:
        """Create a workflow."""
        self.send(await self.wms.operations.workflows.create(self.body, self.require_caller()))


class WorkflowIDHandler(BaseHandler):
    """``GET`` and ``PATCH /v0/workflows/{workflow_id}``."""

    ROUTE = "/workflows/{workflow_id}"
    ROLES = {"GET": USERS, "PATCH": USERS}

    async def get(self, workflow_id: str) -> None:
        """Return the workflow."""
        self.send(public(await self.wms.operations.workflows.get(workflow_id, self.require_caller())))

    async def patch(self, workflow_id: str) -> None:
        """Set or (with null) remove labels."""
        workflows = self.wms.operations.workflows
        self.send(await workflows.set_labels(workflow_id, self.body["labels"], self.require_caller()))


class _DeactivateHandler(BaseHandler):
    KIND: str
    ROLES = {"POST": USERS}

    async def post(self, workflow_id: str) -> None:
        """Deactivate the workflow and send its live taskforces to ``pending-stopper``."""
        moved = await self.wms.operations.workflows.deactivate(workflow_id, self.KIND, self.require_caller())
        self.send({"workflow_id": workflow_id, "n_taskforces": moved})


class WorkflowAbortHandler(_DeactivateHandler):
    """``POST /v0/workflows/{workflow_id}/actions/abort``."""

    ROUTE = "/workflows/{workflow_id}/actions/abort"
    KIND = ABORTED


class WorkflowFinishedHandler(_DeactivateHandler):
    """``POST /v0/workflows/{workflow_id}/actions/finished``."""

    ROUTE = "/workflows/{workflow_id}/actions/finished"
    KIND = FINISHED
