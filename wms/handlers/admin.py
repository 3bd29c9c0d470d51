"""Admin routes over the archive of retired workflows."""

from __future__ import annotations

from typing import Any

from wms.auth import Role
from wms.handlers.base import BaseHandler, Problem

ADMIN = frozenset({Role.ADMIN})


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    workflow = doc["workflow"]
    return {
        "workflow_id": doc["workflow_id"],
        "owner": workflow["owner"],
        "deactivated": workflow["deactivated"],
        "deactivated_ts": workflow["deactivated_ts"],
        "archived_ts": doc["archived_ts"],
        "n_task_directives": len(doc["task_directives"]),
        "n_taskforces": len(doc["taskforces"]),
    }


class ArchiveListHandler(BaseHandler):
    """``GET /v0/admin/archive/workflows``."""

    ROUTE = "/admin/archive/workflows"
    ROLES = {"GET": ADMIN}

    async def get(self) -> None:
        """One page of archived workflows, ordered by workflow id."""
        limit: int = self.query_params.get("limit", 100)
        query: dict[str, Any] = {}
        if after := self.query_params.get("after"):
            query = {"workflow_id": {"$gt": after}}
        docs = (
            await self.wms.store.archive.find(query, {"_id": False}).sort("workflow_id", 1).limit(limit + 1).to_list()
        )
        page = [_summary(d) for d in docs[:limit]]
        self.send({"workflows": page, "next_after": page[-1]["workflow_id"] if len(docs) > limit else None})


class ArchivedWorkflowHandler(BaseHandler):
    """``GET /v0/admin/archive/workflows/{workflow_id}``."""

    ROUTE = "/admin/archive/workflows/{workflow_id}"
    ROLES = {"GET": ADMIN}

    async def get(self, workflow_id: str) -> None:
        """The archived workflow with everything it owned."""
        doc = await self.wms.store.archive.find_one({"workflow_id": workflow_id}, {"_id": False})
        if doc is None:
            raise Problem(404, f"no archived workflow with id: {workflow_id}")
        self.send(doc)


class ArchivePurgeHandler(BaseHandler):
    """``POST /v0/admin/archive/purge``."""

    ROUTE = "/admin/archive/purge"
    ROLES = {"POST": ADMIN}

    async def post(self) -> None:
        """Delete archived workflows for good."""
        purged = await self.wms.retention.purge(
            archived_before=self.body.get("archived_before"), workflow_ids=self.body.get("workflow_ids")
        )
        self.send({"purged": purged})
