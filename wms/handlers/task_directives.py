"""Task directive routes: read, add workers (a new taskforce for the same task)."""

from __future__ import annotations

import logging

from wms.auth import Role
from wms.database.store import MQ_ACTIVATED_TS
from wms.handlers.base import ANYONE, USERS, BaseHandler, Problem
from wms.lifecycle import Phase
from wms.translation import make_taskforce

LOGGER = logging.getLogger(__name__)


class TaskDirectiveIDHandler(BaseHandler):
    """``GET /v0/task-directives/{task_id}``."""

    ROUTE = "/task-directives/{task_id}"
    ROLES = {"GET": USERS}

    async def get(self, task_id: str) -> None:
        """Return the task directive."""
        doc = await self.wms.store.task_directives.find_one({"task_id": task_id}, {"_id": False})
        if doc is None:
            raise Problem(404, f"no task directive found with id: {task_id}")
        self.check_owner(doc, "task directive")
        self.send(self.wms.public(doc))


class AddWorkersHandler(BaseHandler):
    """``POST /v0/task-directives/{task_id}/actions/add-workers``."""

    ROUTE = "/task-directives/{task_id}/actions/add-workers"
    ROLES = {"POST": ANYONE}

    async def post(self, task_id: str) -> None:
        """Create a taskforce for the task at a cluster location, with the settings of an existing one."""
        store = self.wms.store
        location = self.body["cluster_location"]
        if location not in self.wms.config.clusters:
            raise Problem(400, f"condor cluster location not found: {location}")
        if self.body["n_workers"] > self.wms.config.max_workers_per_taskforce:
            raise Problem(422, f"n_workers exceeds the limit of {self.wms.config.max_workers_per_taskforce}")
        directive = await store.task_directives.find_one({"task_id": task_id}, {"_id": False})
        if directive is None:
            raise Problem(404, f"no task directive found with id: {task_id}")
        self.check_owner(directive, "task directive")
        workflow = await store.workflows.find_one({"workflow_id": directive["workflow_id"]}, {"_id": False})
        if workflow is None or workflow["deactivated"]:
            raise Problem(422, f"cannot add a taskforce to a deactivated workflow ({directive['workflow_id']})")
        template = await store.taskforces.find_one({"task_id": task_id}, {"_id": False}, sort=[("timestamp", 1)])
        if template is None:
            raise Problem(404, f"task {task_id} has no taskforce to copy settings from")
        activated = bool(workflow.get(MQ_ACTIVATED_TS))
        source = "TMS" if Role.TMS in self.require_caller().roles else "User"
        taskforce = make_taskforce(
            directive,
            cluster_location=location,
            schedd=self.wms.config.clusters[location],
            n_workers=int(self.body["n_workers"]),
            priority=workflow["priority"],
            pilot_config=template["pilot_config"],
            worker_config=template["worker_config"],
            source_entity=source,
            phase=Phase.PRE_LAUNCH if activated else Phase.PRE_MQ_ACTIVATION,
            context="workers added" + (" (queues already active)" if activated else ""),
        )
        await store.insert_many(store.taskforces, "TaskforceObject", [taskforce])
        LOGGER.info("task %s: taskforce %s added at %s", task_id, taskforce["taskforce_uuid"], location)
        (self.wms.wakeups.launch if activated else self.wms.wakeups.mq_activator).set()
        self.send(self.wms.public(taskforce))
