"""Taskforce routes: read, retry."""

from __future__ import annotations

import logging
from typing import Any

from wms.database.store import MQ_ACTIVATED_TS, SUBMIT_FAILURES
from wms.handlers.base import ANYONE, USERS, BaseHandler, Problem
from wms.lifecycle import Phase, log_entry
from wms.translation import make_taskforce

LOGGER = logging.getLogger(__name__)


class TaskforceUUIDHandler(BaseHandler):
    """``GET /v0/taskforces/{taskforce_uuid}``."""

    ROUTE = "/taskforces/{taskforce_uuid}"
    ROLES = {"GET": ANYONE}

    async def get(self, taskforce_uuid: str) -> None:
        """Return the taskforce."""
        doc = await self.wms.store.taskforces.find_one({"taskforce_uuid": taskforce_uuid}, {"_id": False})
        if doc is None:
            raise Problem(404, f"no taskforce found with uuid: {taskforce_uuid}")
        self.check_owner(doc, "taskforce")
        self.send(self.wms.public(doc))


def has_failed(doc: dict[str, Any], retries: int) -> bool:
    """The taskforce failed: submission gave up, held jobs, task errors, or it ended."""
    gave_up = doc["phase"] == str(Phase.PENDING_STARTER) and doc.get(SUBMIT_FAILURES, 0) > retries
    held = any(status.startswith("HELD") for status in doc["compound_statuses"])
    ended = doc["phase"] in (str(Phase.CONDOR_RM), str(Phase.CONDOR_COMPLETE))
    return gave_up or held or bool(doc["top_task_errors"]) or ended


class RetryHandler(BaseHandler):
    """``POST /v0/taskforces/{taskforce_uuid}/actions/retry``: a fresh taskforce for the same task and location."""

    ROUTE = "/taskforces/{taskforce_uuid}/actions/retry"
    ROLES = {"POST": USERS}

    async def post(self, taskforce_uuid: str) -> None:
        """Create the new taskforce, stop the old one if it is still live, and log the retry on both."""
        store = self.wms.store
        old = await store.taskforces.find_one({"taskforce_uuid": taskforce_uuid}, {"_id": False})
        if old is None:
            raise Problem(404, f"no taskforce found with uuid: {taskforce_uuid}")
        self.check_owner(old, "taskforce")
        if not has_failed(old, self.wms.config.tms_action_retries):
            raise Problem(409, f"taskforce {taskforce_uuid} has not failed (phase {old['phase']}); nothing to retry")
        workflow = await store.workflows.find_one({"workflow_id": old["workflow_id"]}, {"_id": False})
        if workflow is None or workflow["deactivated"]:
            raise Problem(422, f"cannot retry a taskforce of a deactivated workflow ({old['workflow_id']})")
        directive = await store.task_directives.find_one({"task_id": old["task_id"]}, {"_id": False})
        if directive is None:
            raise Problem(404, f"no task directive found with id: {old['task_id']}")
        subject = self.require_caller().subject
        activated = bool(workflow.get(MQ_ACTIVATED_TS))
        new = make_taskforce(
            directive,
            cluster_location=old["cluster_location"],
            schedd=old["schedd"],
            n_workers=old["n_workers"] or 1,
            priority=old["priority"],
            pilot_config=old["pilot_config"],
            worker_config=old["worker_config"],
            source_entity="User",
            phase=Phase.PRE_LAUNCH if activated else Phase.PRE_MQ_ACTIVATION,
            context=f"retry of {taskforce_uuid} by {subject}",
        )
        await store.insert_many(store.taskforces, "TaskforceObject", [new])
        note = f"retried as {new['taskforce_uuid']} by {subject}"
        if not await self.wms.lifecycle.move(taskforce_uuid, Phase.PENDING_STOPPER, source_entity="User", context=note):
            await store.taskforces.update_one(
                {"taskforce_uuid": taskforce_uuid},
                {"$addToSet": {"phase_change_log": log_entry(Phase(old["phase"]), True, "User", note)}},
            )
        LOGGER.info("taskforce %s %s", taskforce_uuid, note)
        (self.wms.wakeups.launch if activated else self.wms.wakeups.mq_activator).set()
        self.send(self.wms.public(new))


class TaskforceLogsHandler(BaseHandler):
    """``GET /v0/taskforces/{taskforce_uuid}/logs``: output tails of the taskforce's finished or failed jobs."""

    ROUTE = "/taskforces/{taskforce_uuid}/logs"
    ROLES = {"GET": ANYONE}

    async def get(self, taskforce_uuid: str) -> None:
        """The job logs, ordered by job id."""
        doc = await self.wms.store.taskforces.find_one(
            {"taskforce_uuid": taskforce_uuid}, {"_id": False, "owner": True}
        )
        if doc is None:
            raise Problem(404, f"no taskforce found with uuid: {taskforce_uuid}")
        self.check_owner(doc, "taskforce")
        logs = await self.wms.store.task_logs.find({"taskforce_uuid": taskforce_uuid}, {"_id": False}).to_list(None)
        jobs = sorted((self.wms.public(_without_uuid(log)) for log in logs), key=lambda j: _job_order(j["job_id"]))
        self.send({"taskforce_uuid": taskforce_uuid, "jobs": jobs})


def _without_uuid(log: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in log.items() if k != "taskforce_uuid"}


def _job_order(job_id: str) -> tuple[int, int]:
    cluster, _, proc = job_id.partition(".")
    return int(cluster), int(proc)
