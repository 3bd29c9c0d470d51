"""Workflow operations: create (with the active-workflow quota), labels, and deactivation (finish, abort).

Invariants held here:
- a user never has more active workflows than ``MAX_ACTIVE_WORKFLOWS_PER_USER``: the count is checked before and
  re-checked after the workflow is written; a request that finds itself over the limit withdraws what it wrote;
- no taskforce stays live under a deactivated workflow: the flag is set first (one conditional update), then the
  taskforces are sent to ``pending-stopper``; :func:`stop_taskforces` is also what the MQ activator runs for every
  deactivated workflow whose queues are not yet retired, so a crash between the two steps is completed on restart.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from mqs_client import ManagedMQSClient
from mqs_client.interface import MQProfile, MQSNotFound
from wms.auth import Caller
from wms.config import WMSConfig
from wms.daemons.loop import Wakeups
from wms.database.store import LABELS_REV, Doc, Store, one_of, public
from wms.lifecycle import ENDING_PHASES, LIVE_PHASES, Lifecycle, Phase
from wms.operations.errors import OperationError, found
from wms.translation import QuotaError, TranslationError, build_documents, plan_workflow

LOGGER = logging.getLogger(__name__)
MAX_LABELS = 32  # as Docs/openapi.json Labels.maxProperties
LABEL_EDIT_ATTEMPTS = 20


async def stop_taskforces(lifecycle: Lifecycle, workflow_id: str, kind: str, source_entity: str, context: str) -> int:
    """Send every live taskforce of a deactivated workflow to ``pending-stopper``; the number moved (idempotent)."""
    moved = await lifecycle.move_many(
        {"workflow_id": workflow_id}, Phase.PENDING_STOPPER, source_entity=source_entity, context=context
    )
    if moved:
        LOGGER.info("workflow %s %s: %d taskforces to stop", workflow_id, kind, moved)
    return moved


class Workflows:
    """Create, label and deactivate workflows."""

    def __init__(
        self, store: Store, lifecycle: Lifecycle, mqs: ManagedMQSClient, config: WMSConfig, wakeups: Wakeups
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.mqs = mqs
        self.config = config
        self.wakeups = wakeups

    async def get(self, workflow_id: str, caller: Caller) -> Doc:
        """The workflow (404 when missing or another user's)."""
        doc = await self.store.workflows.find_one({"workflow_id": workflow_id}, {"_id": False})
        return found(doc, "workflow", f"id: {workflow_id}", caller)

    async def public_profiles(self, workflow_id: str, caller: Caller) -> list[MQProfile]:
        """The workflow's public queue profiles (404 when the workflow or its queues are missing)."""
        await self.get(workflow_id, caller)
        try:
            return await self.mqs.get_public_profiles(workflow_id)
        except MQSNotFound as exc:
            raise OperationError(404, f"no queues found for workflow {workflow_id}") from exc

    async def create(self, request: dict[str, Any], caller: Caller) -> Doc:
        """Create a workflow; the public workflow, task directives and taskforces.

        Children are written before their parent: taskforces, then task directives, then the workflow, which is
        the commit point (the daemons act on workflows that exist). Every task has a taskforce, so whatever a
        crashed request left behind includes taskforces, through which the MQ activator finds and reaps it.
        """
        owner = caller.subject
        try:
            plan = plan_workflow(request, owner, self.config)
        except TranslationError as exc:
            raise OperationError(400, str(exc)) from exc
        except QuotaError as exc:
            raise OperationError(422, str(exc)) from exc
        await self._check_quota(owner, await self._n_active(owner))  # before anything is reserved
        profiles = await self.mqs.reserve(plan.workflow_id, plan.queue_aliases, plan.public_aliases)
        workflow, directives, taskforces = build_documents(plan, {p.alias: p.mqid for p in profiles})
        await self.store.insert_in_order(
            [
                (self.store.taskforces, "TaskforceObject", taskforces),
                (self.store.task_directives, "TaskDirectiveObject", directives),
                (self.store.workflows, "WorkflowObject", [workflow]),
            ]
        )
        # re-check: of concurrent requests that all passed the first check, each sees the others' workflows
        # (at worst all of them withdraw, never too many stay)
        n_active = await self._n_active(owner)
        if n_active > self.config.max_active_workflows_per_user:
            await self._withdraw(plan.workflow_id)
            await self._check_quota(owner, n_active)
        LOGGER.info(
            "workflow %s created by %s: %d tasks, %d taskforces, %d queues",
            plan.workflow_id,
            owner,
            len(directives),
            len(taskforces),
            len(profiles),
        )
        self.wakeups.mq_activator.set()
        return {
            "workflow": public(workflow),
            "task_directives": [public(d) for d in directives],
            "taskforces": [public(t) for t in taskforces],
        }

    async def _n_active(self, owner: str) -> int:
        return await self.store.count(self.store.workflows, {"owner": owner, "deactivated": None})

    async def _check_quota(self, owner: str, n_active: int) -> None:
        limit = self.config.max_active_workflows_per_user
        if n_active >= limit:
            detail = f"{owner} has {n_active} active workflows (limit {limit}); finish or abort some first"
            raise OperationError(429, detail, headers={"Retry-After": "60"})

    async def _withdraw(self, workflow_id: str) -> None:
        """Undo a creation that went over the quota: queues retired first (no activation after this), then the
        workflow, then its children (a crash in between leaves orphans, which the MQ activator reaps)."""
        await self.mqs.deactivate(workflow_id)
        query = {"workflow_id": workflow_id}
        await self.store.workflows.delete_one(query)
        await self.store.taskforces.delete_many(query)
        await self.store.task_directives.delete_many(query)
        LOGGER.warning("workflow %s withdrawn: its owner went over the active-workflow quota", workflow_id)

    async def set_labels(self, workflow_id: str, labels: dict[str, str | None], caller: Caller) -> Doc:
        """Set or (with null) remove labels; the updated workflow.

        Each edit is conditional on the labels revision it read, so concurrent edits are merged one after the other
        (edits of other labels are kept) and never together pass the limit of ``MAX_LABELS``.
        """
        for _ in range(LABEL_EDIT_ATTEMPTS):
            current = await self.get(workflow_id, caller)
            merged = {k for k in current.get("labels", {}) if labels.get(k, "") is not None}
            merged |= {k for k, v in labels.items() if v is not None}
            if len(merged) > MAX_LABELS:
                raise OperationError(400, f"a workflow may have at most {MAX_LABELS} labels")
            update: dict[str, Any] = {"$inc": {LABELS_REV: 1}}
            if to_set := {f"labels.{k}": v for k, v in labels.items() if v is not None}:
                update["$set"] = to_set
            if to_unset := {f"labels.{k}": "" for k, v in labels.items() if v is None}:
                update["$unset"] = to_unset
            revision = {"workflow_id": workflow_id, LABELS_REV: current.get(LABELS_REV)}
            if (await self.store.workflows.update_one(revision, update)).modified_count:
                LOGGER.info("workflow %s labels updated by %s: %s", workflow_id, caller.subject, labels)
                return public(await self.get(workflow_id, caller))
        detail = f"workflow {workflow_id}: labels edited concurrently too often; try again"
        raise OperationError(503, detail, {"Retry-After": "1"})

    async def deactivate(self, workflow_id: str, kind: str, caller: Caller) -> int:
        """Deactivate the workflow as ``kind`` (``FINISHED``, ``ABORTED``) and stop its live taskforces; the number
        of live taskforces it stops (a repeat: the number it still had to move).

        Repeating the same action is harmless (it completes a move a crash may have interrupted); deactivating a
        workflow the other way is a conflict. The call that deactivates logs a refused ``pending-stopper`` move on
        the taskforces that had already ended, as upstream does (before it moves the live ones).
        """
        current = await self.get(workflow_id, caller)
        if current["deactivated"] not in (None, kind):
            raise OperationError(409, f"workflow {workflow_id} is already deactivated as {current['deactivated']}")
        live = {"workflow_id": workflow_id, "phase": one_of(sorted(LIVE_PHASES))}
        n_live = await self.store.count(self.store.taskforces, live)
        # read before the flag: once it is set, the MQ activator may stop live ones, which must not count as ended
        ended_query = {"workflow_id": workflow_id, "phase": one_of(sorted(ENDING_PHASES))}
        ended = [d["taskforce_uuid"] async for d in self.store.taskforces.find(ended_query, {"taskforce_uuid": 1})]
        flagged = await self.store.workflows.update_one(
            {"workflow_id": workflow_id, "deactivated": None},
            {"$set": {"deactivated": kind, "deactivated_ts": time.time()}},
        )
        latest = await self.get(workflow_id, caller)
        if latest["deactivated"] != kind:  # lost a race against the other action
            raise OperationError(409, f"workflow {workflow_id} is already deactivated as {latest['deactivated']}")
        context = f"workflow {kind.lower()} by {caller.subject}"
        if flagged.modified_count and ended:  # as upstream, the deactivating call logs a refused move on ended ones
            await self.lifecycle.record_failure(
                {"workflow_id": workflow_id, "taskforce_uuid": one_of(ended)},
                Phase.PENDING_STOPPER,
                source_entity="User",
                context=f"{context}: the taskforce had already ended",
            )
        moved = await stop_taskforces(self.lifecycle, workflow_id, kind, "User", context)
        self.wakeups.mq_activator.set()
        # the deactivating call answers how many it stops, though the MQ activator may have moved some first
        return n_live if flagged.modified_count else moved
