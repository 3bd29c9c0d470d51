"""Taskforce operations: add workers to a task, retry a failed taskforce.

Invariants held here:
- no taskforce is made live under a deactivated workflow: each new taskforce is written, then its workflow is read
  again; if the workflow was deactivated meanwhile, the new taskforce is sent to ``pending-stopper`` and the call
  refused (deactivation sets its flag before it moves taskforces, so one of the two always sees the other);
- a taskforce is retried only when it ended in failure (:func:`ended_in_failure`), at most once: the old taskforce
  records the new one's uuid by one conditional update before the new one is written, and a repeat after a crash
  writes that same uuid (the unique index makes the write happen once);
- each task has at most ``MAX_RETRIES_PER_TASK`` retried and ``MAX_ADDED_TASKFORCES_PER_TASK`` added taskforces,
  counted on its task directive by conditional increments.
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo.errors import DuplicateKeyError

from wms import ids
from wms.auth import Caller, Role
from wms.config import WMSConfig
from wms.daemons.loop import Wakeups
from wms.database.store import (
    MQ_ACTIVATED_TS,
    N_ADDED,
    N_RETRIES,
    RETRIED_AS,
    SUBMIT_FAILURES,
    Doc,
    Store,
    append_log,
    public,
)
from wms.lifecycle import Lifecycle, Phase, log_entry
from wms.operations.errors import OperationError, found
from wms.translation import make_taskforce
from wms.validation import location_refusal

LOGGER = logging.getLogger(__name__)


def ended_in_failure(doc: Doc, retries: int) -> bool:
    """The taskforce failed: submission gave up, jobs were held or removed, or tasks reported errors.

    A taskforce whose jobs completed without task errors did not fail, whatever its phase.
    """
    gave_up = doc["phase"] == str(Phase.PENDING_STARTER) and doc.get(SUBMIT_FAILURES, 0) > retries
    held_or_removed = any(s.startswith("HELD") or s == "REMOVED" for s in doc["compound_statuses"])
    removed = doc["phase"] == str(Phase.CONDOR_RM)
    return gave_up or held_or_removed or removed or bool(doc["top_task_errors"])


class Taskforces:
    """Add workers and retry taskforces."""

    def __init__(self, store: Store, lifecycle: Lifecycle, config: WMSConfig, wakeups: Wakeups) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.config = config
        self.wakeups = wakeups

    async def _active_workflow(self, workflow_id: str, refusal: str) -> Doc:
        workflow = await self.store.workflows.find_one({"workflow_id": workflow_id}, {"_id": False})
        if workflow is None or workflow["deactivated"]:
            raise OperationError(422, f"cannot {refusal} a deactivated workflow ({workflow_id})")
        return workflow

    async def _directive(self, task_id: str, caller: Caller) -> Doc:
        doc = await self.store.task_directives.find_one({"task_id": task_id}, {"_id": False})
        return found(doc, "task directive", f"id: {task_id}", caller)

    async def _launch(self, taskforce: Doc, workflow: Doc, refusal: str) -> None:
        """Write the new taskforce, then re-check its workflow: stop it and refuse if it was deactivated meanwhile."""
        try:
            await self.store.insert_many(self.store.taskforces, "TaskforceObject", [taskforce])
        except DuplicateKeyError:  # a concurrent repeat of the same retry wrote it
            pass
        latest = await self.store.workflows.find_one({"workflow_id": workflow["workflow_id"]}, {"_id": False})
        if latest is None or latest["deactivated"]:
            await self.lifecycle.move(
                taskforce["taskforce_uuid"],
                Phase.PENDING_STOPPER,
                source_entity="User",
                context="workflow deactivated while the taskforce was created",
            )
            raise OperationError(422, f"cannot {refusal} a deactivated workflow ({workflow['workflow_id']})")
        (self.wakeups.launch if taskforce["phase"] == Phase.PRE_LAUNCH else self.wakeups.mq_activator).set()

    async def job_logs(self, taskforce_uuid: str, caller: Caller) -> list[Doc]:
        """The output tails of the taskforce's jobs, by job id (404 when missing or another user's)."""
        doc = await self.store.taskforces.find_one({"taskforce_uuid": taskforce_uuid}, {"_id": False, "owner": True})
        found(doc, "taskforce", f"uuid: {taskforce_uuid}", caller)
        logs = await self.store.task_logs.find({"taskforce_uuid": taskforce_uuid}, {"_id": False}).to_list(None)
        return sorted((public(_without_uuid(log)) for log in logs), key=lambda j: _job_order(j["job_id"]))

    async def add_workers(self, task_id: str, cluster_location: str, n_workers: int, caller: Caller) -> Doc:
        """Create a taskforce for the task at a cluster location, with the settings of its first one."""
        if cluster_location not in self.config.clusters:
            known = ", ".join(sorted(self.config.clusters))
            raise OperationError(400, f"condor cluster location not found: {cluster_location} (known: {known})")
        if n_workers > self.config.max_workers_per_taskforce:
            raise OperationError(422, f"n_workers exceeds the limit of {self.config.max_workers_per_taskforce}")
        directive = await self._directive(task_id, caller)
        if location_refused := location_refusal(cluster_location, directive, self.config, f"task {task_id}"):
            raise OperationError(422, location_refused)
        refusal = "add a taskforce to"
        workflow = await self._active_workflow(directive["workflow_id"], refusal)
        template = await self.store.taskforces.find_one({"task_id": task_id}, {"_id": False}, sort=[("timestamp", 1)])
        if template is None:
            raise OperationError(404, f"task {task_id} has no taskforce to copy settings from")
        cap = self.config.max_added_taskforces_per_task
        if not await self.store.take(self.store.task_directives, {"task_id": task_id}, N_ADDED, cap):
            raise OperationError(422, f"task {task_id} already has the most added taskforces allowed ({cap})")
        taskforce = make_taskforce(
            directive,
            cluster_location=cluster_location,
            schedd=self.config.clusters[cluster_location],
            n_workers=n_workers,
            priority=workflow["priority"] + self.config.max_priority,  # as upstream: launched first
            pilot_config=template["pilot_config"],
            worker_config=template["worker_config"],
            source_entity="TMS" if Role.TMS in caller.roles else "USER",  # upstream's names of the caller's role
            phase=Phase.PRE_MQ_ACTIVATION,  # the MQ activator advances it at once when the queues are active
            context="created to add workers to this task",
        )
        await self._launch(taskforce, workflow, refusal)
        LOGGER.info("task %s: taskforce %s added at %s", task_id, taskforce["taskforce_uuid"], cluster_location)
        return taskforce

    async def retry(self, taskforce_uuid: str, caller: Caller) -> Doc:
        """A fresh taskforce for the task and location of a failed one; the old one is stopped if still live."""
        old = await self.store.taskforces.find_one({"taskforce_uuid": taskforce_uuid}, {"_id": False})
        old = found(old, "taskforce", f"uuid: {taskforce_uuid}", caller)
        if not (old.get(RETRIED_AS) or ended_in_failure(old, self.config.tms_action_retries)):
            detail = f"taskforce {taskforce_uuid} has not failed (phase {old['phase']}); nothing to retry"
            raise OperationError(409, detail)
        refusal = "retry a taskforce of"
        workflow = await self._active_workflow(old["workflow_id"], refusal)
        directive = await self._directive(old["task_id"], caller)
        new_uuid = old.get(RETRIED_AS)
        if new_uuid is None:
            new_uuid = await self._claim(old, directive)
        elif await self.store.taskforces.find_one({"taskforce_uuid": new_uuid}, {"_id": True}) is not None:
            raise OperationError(409, f"taskforce {taskforce_uuid} was already retried as {new_uuid}")
        # else: a retry that crashed before writing its taskforce: write it now, with the uuid it recorded
        new = make_taskforce(
            directive,
            cluster_location=old["cluster_location"],
            schedd=old["schedd"],
            n_workers=old["n_workers"] or 1,
            priority=old["priority"],
            pilot_config=old["pilot_config"],
            worker_config=old["worker_config"],
            source_entity="User",
            phase=Phase.PRE_LAUNCH if workflow.get(MQ_ACTIVATED_TS) else Phase.PRE_MQ_ACTIVATION,
            context=f"retry of {taskforce_uuid} by {caller.subject}",
            uuid=new_uuid,
            retry_of=taskforce_uuid,
        )
        await self._launch(new, workflow, refusal)
        note = f"retried as {new_uuid} by {caller.subject}"
        if not await self.lifecycle.move(taskforce_uuid, Phase.PENDING_STOPPER, source_entity="User", context=note):
            await self.store.taskforces.update_one(
                {"taskforce_uuid": taskforce_uuid}, append_log(log_entry(Phase(old["phase"]), True, "User", note))
            )
        LOGGER.info("taskforce %s %s", taskforce_uuid, note)
        return new

    async def _claim(self, old: Doc, directive: Doc) -> str:
        """Count the retry against the task's cap and record the new uuid on the old taskforce; the new uuid.

        Two concurrent retries of one taskforce: one records its uuid, the other gives its count back and is refused.
        """
        task = {"task_id": directive["task_id"]}
        cap = self.config.max_retries_per_task
        if not await self.store.take(self.store.task_directives, task, N_RETRIES, cap):
            raise OperationError(422, f"task {directive['task_id']} was already retried the most times allowed ({cap})")
        new_uuid = ids.taskforce_uuid()
        claimed = await self.store.taskforces.update_one(
            {"taskforce_uuid": old["taskforce_uuid"], RETRIED_AS: None}, {"$set": {RETRIED_AS: new_uuid}}
        )
        if not claimed.modified_count:
            await self.store.give_back(self.store.task_directives, task, N_RETRIES)
            raise OperationError(409, f"taskforce {old['taskforce_uuid']} is being retried by another request")
        return new_uuid


def _without_uuid(log: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in log.items() if k != "taskforce_uuid"}


def _job_order(job_id: str) -> tuple[int, int]:
    cluster, _, proc = job_id.partition(".")
    return int(cluster), int(proc)
