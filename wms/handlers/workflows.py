"""Workflow routes: create, read, abort, finish."""

from __future__ import annotations

import logging
import time
from typing import Any

from wms.database.store import ABORTED, FINISHED
from wms.handlers.base import USERS, BaseHandler, Problem
from wms.lifecycle import Phase
from wms.translation import QuotaError, TranslationError, build_documents, plan_workflow

LOGGER = logging.getLogger(__name__)
MAX_LABELS = 32  # as Docs/openapi.json Labels.maxProperties


class WorkflowsHandler(BaseHandler):
    """``POST /v0/workflows``: a request becomes a workflow, its task directives and taskforces."""

    ROUTE = "/workflows"
    ROLES = {"POST": USERS}

    async def post(self) -> None:
        """Create a workflow.

        Children are written before their parent: taskforces, then task directives, then the workflow, which is
        the commit point (the daemons act on workflows that exist). Every task has a taskforce, so whatever a
        crashed request left behind includes taskforces, through which the MQ activator finds and reaps it.
        """
        caller = self.require_caller()
        try:
            plan = plan_workflow(self.body, caller.subject, self.wms.config)
        except TranslationError as exc:
            raise Problem(400, str(exc)) from exc
        except QuotaError as exc:
            raise Problem(422, str(exc)) from exc
        limit = self.wms.config.max_active_workflows_per_user
        store = self.wms.store
        active = await store.count(store.workflows, {"owner": caller.subject, "deactivated": None})
        if active >= limit:
            detail = f"{caller.subject} has {active} active workflows (limit {limit}); finish or abort some first"
            raise Problem(429, detail, headers={"Retry-After": "60"})
        profiles = await self.wms.mqs.reserve(plan.workflow_id, plan.queue_aliases, plan.public_aliases)
        mqids = {p.alias: p.mqid for p in profiles}
        workflow, directives, taskforces = build_documents(plan, mqids)
        await store.insert_in_order(
            [
                (store.taskforces, "TaskforceObject", taskforces),
                (store.task_directives, "TaskDirectiveObject", directives),
                (store.workflows, "WorkflowObject", [workflow]),
            ]
        )
        LOGGER.info(
            "workflow %s created by %s: %d tasks, %d taskforces, %d queues",
            plan.workflow_id,
            caller.subject,
            len(directives),
            len(taskforces),
            len(profiles),
        )
        self.wms.wakeups.mq_activator.set()
        self.send(
            {
                "workflow": self.wms.public(workflow),
                "task_directives": [self.wms.public(d) for d in directives],
                "taskforces": [self.wms.public(t) for t in taskforces],
            }
        )


async def load_workflow(handler: BaseHandler, workflow_id: str) -> dict[str, Any]:
    """The workflow, after a 404 and owner check."""
    doc = await handler.wms.store.workflows.find_one({"workflow_id": workflow_id}, {"_id": False})
    if doc is None:
        raise Problem(404, f"no workflow found with id: {workflow_id}")
    handler.check_owner(doc, "workflow")
    return doc


class WorkflowIDHandler(BaseHandler):
    """``GET`` and ``PATCH /v0/workflows/{workflow_id}``."""

    ROUTE = "/workflows/{workflow_id}"
    ROLES = {"GET": USERS, "PATCH": USERS}

    async def get(self, workflow_id: str) -> None:
        """Return the workflow."""
        self.send(self.wms.public(await load_workflow(self, workflow_id)))

    async def patch(self, workflow_id: str) -> None:
        """Set or (with null) remove labels, one field per label so concurrent edits of other labels are kept."""
        current = await load_workflow(self, workflow_id)
        labels: dict[str, str | None] = self.body["labels"]
        merged = {k for k in current.get("labels", {}) if labels.get(k, "") is not None} | {
            k for k, v in labels.items() if v is not None
        }
        if len(merged) > MAX_LABELS:
            raise Problem(400, f"a workflow may have at most {MAX_LABELS} labels")
        update: dict[str, Any] = {}
        if to_set := {f"labels.{k}": v for k, v in labels.items() if v is not None}:
            update["$set"] = to_set
        if to_unset := {f"labels.{k}": "" for k, v in labels.items() if v is None}:
            update["$unset"] = to_unset
        if update:
            await self.wms.store.workflows.update_one({"workflow_id": workflow_id}, update)
        doc = await load_workflow(self, workflow_id)
        LOGGER.info("workflow %s labels updated by %s: %s", workflow_id, self.require_caller().subject, labels)
        self.send(self.wms.public(doc))


class _DeactivateHandler(BaseHandler):
    KIND: str
    ROLES = {"POST": USERS}

    async def post(self, workflow_id: str) -> None:
        """Deactivate the workflow and send its live taskforces to ``pending-stopper``.

        Repeating the same action is harmless (it completes a move a crash may have interrupted); deactivating a
        workflow the other way is a conflict.
        """
        current = await load_workflow(self, workflow_id)
        if current["deactivated"] not in (None, self.KIND):
            raise Problem(409, f"workflow {workflow_id} is already deactivated as {current['deactivated']}")
        await self.wms.store.workflows.update_one(
            {"workflow_id": workflow_id, "deactivated": None},
            {"$set": {"deactivated": self.KIND, "deactivated_ts": time.time()}},
        )
        latest = await load_workflow(self, workflow_id)
        if latest["deactivated"] != self.KIND:  # lost a race against the other action
            raise Problem(409, f"workflow {workflow_id} is already deactivated as {latest['deactivated']}")
        moved = await self.wms.lifecycle.move_many(
            {"workflow_id": workflow_id},
            Phase.PENDING_STOPPER,
            source_entity="User",
            context=f"workflow {self.KIND.lower()} by {self.require_caller().subject}",
        )
        LOGGER.info("workflow %s %s: %d taskforces to stop", workflow_id, self.KIND, moved)
        self.wms.wakeups.mq_activator.set()
        self.send({"workflow_id": workflow_id, "n_taskforces": moved})


class WorkflowAbortHandler(_DeactivateHandler):
    """``POST /v0/workflows/{workflow_id}/actions/abort``."""

    ROUTE = "/workflows/{workflow_id}/actions/abort"
    KIND = ABORTED


class WorkflowFinishedHandler(_DeactivateHandler):
    """``POST /v0/workflows/{workflow_id}/actions/finished``."""

    ROUTE = "/workflows/{workflow_id}/actions/finished"
    KIND = FINISHED
