"""Taskforce read route."""

from __future__ import annotations

from wms.handlers.base import ANYONE, BaseHandler, Problem


class TaskforceUUIDHandler(BaseHandler):
    """``GET /v0/taskforces/{taskforce_uuid}``."""

    ROUTE = "/v0/taskforces/{taskforce_uuid}"
    ROLES = {"GET": ANYONE}

    async def get(self, taskforce_uuid: str) -> None:
        """Return the taskforce."""
        doc = await self.wms.store.taskforces.find_one({"taskforce_uuid": taskforce_uuid}, {"_id": False})
        if doc is None:
            raise Problem(404, f"no taskforce found with uuid: {taskforce_uuid}")
        self.check_owner(doc, "taskforce")
        self.send(self.wms.public(doc))
