"""Progress reads: a workflow's health, and its progress per task, taskforce and queue (``wms.progress`` derives
each figure; this module gathers the documents and the MQS's queue depths)."""

from __future__ import annotations

import logging
import time

from mqs_client import ManagedMQSClient, MQSError, QueueDepth, TryAgainLater
from wms.auth import Caller
from wms.config import WMSConfig
from wms.database.store import RETRIED_AS, SUBMIT_FAILURES, Doc, Store
from wms.lifecycle import ENDING_PHASES, Phase
from wms.operations.errors import found
from wms.operations.taskforces import ended_in_failure
from wms.progress import (
    EVENT_COUNTERS,
    RATE_SETTLED,
    RATE_TS,
    counted,
    counters_of,
    eta,
    health,
    overall,
    rate,
)

LOGGER = logging.getLogger(__name__)

_TASKFORCE_FIELDS = (
    "taskforce_uuid", "task_id", "cluster_location", "phase", "compound_statuses", "top_task_errors",
    "phase_change_log", EVENT_COUNTERS, SUBMIT_FAILURES, RATE_TS, RATE_SETTLED, RETRIED_AS,
)  # fmt: skip


class Progress:
    """Read a workflow's health and progress."""

    def __init__(self, store: Store, mqs: ManagedMQSClient, config: WMSConfig) -> None:
        self.store = store
        self.mqs = mqs
        self.config = config

    async def _taskforces(self, workflow_id: str) -> list[Doc]:
        projection = {"_id": False, **dict.fromkeys(_TASKFORCE_FIELDS, True)}
        cursor = self.store.taskforces.find({"workflow_id": workflow_id}, projection).sort([("timestamp", 1)])
        return await cursor.to_list(None)

    def workflow_health(self, taskforces: list[Doc]) -> tuple[str, str | None]:
        """The workflow's health from its taskforces' (those a retry replaced left out)."""
        retries = self.config.tms_action_retries
        return overall((health(tf, retries) for tf in taskforces if counted(tf)), "taskforces")

    async def with_health(self, workflow: Doc) -> Doc:
        """The workflow with its ``health`` and ``health_reason``."""
        state, reason = self.workflow_health(await self._taskforces(workflow["workflow_id"]))
        return {**workflow, "health": state, "health_reason": reason}

    async def _depths(self, workflow_id: str) -> list[QueueDepth] | None:
        try:
            return await self.mqs.queue_depths(workflow_id)
        except (MQSError, TryAgainLater) as exc:  # remote MQS without the route, retired queues, broker away
            LOGGER.debug("workflow %s: no queue depths: %s", workflow_id, exc)
            return None

    async def workflow(self, workflow_id: str, caller: Caller) -> Doc:
        """The ``WorkflowProgress`` of a workflow (404 when missing or another user's)."""
        doc = await self.store.workflows.find_one(
            {"workflow_id": workflow_id}, {"_id": False, "owner": True, "deactivated": True}
        )
        active = not found(doc, "workflow", f"id: {workflow_id}", caller)["deactivated"]
        now = time.time()
        taskforces = await self._taskforces(workflow_id)
        directives = await self.store.task_directives.find(
            {"workflow_id": workflow_id},
            {"_id": False, "task_id": True, "name": True, "input_queues": True, "output_queues": True,
             "input_queue_aliases": True, "output_queue_aliases": True},
        ).to_list(None)  # fmt: skip
        depths = await self._depths(workflow_id)
        by_mqid = {d.mqid: d for d in depths or []}
        retries = self.config.tms_action_retries
        tasks = []
        for directive in sorted(directives, key=lambda d: d["task_id"]):
            mine = [tf for tf in taskforces if tf["task_id"] == directive["task_id"]]
            views = [_taskforce_progress(tf, retries, now, active) for tf in mine]
            inputs = [by_mqid.get(mqid) for mqid in directive["input_queues"]]
            aliases = directive.get("input_queue_aliases") or [
                q.alias if q else mqid for q, mqid in zip(inputs, directive["input_queues"], strict=True)
            ]
            waiting = _total([q.ready if q else None for q in inputs]) if depths is not None else None
            consumers = _total([q.consumers if q else None for q in inputs]) if depths is not None else None
            sums = {key: sum(v[key] for v in views) for key in ("done", "failed", "in_flight")}
            task_rate = sum(v["rate"] for v in views)
            remaining = None if waiting is None else waiting + sums["in_flight"]
            state, reason = overall(
                ((v["health"], v["health_reason"]) for tf, v in zip(mine, views, strict=True) if counted(tf)),
                "taskforces",
            )
            tasks.append(
                {
                    "task_id": directive["task_id"],
                    "name": directive.get("name"),
                    "input_queues": aliases,
                    "output_queues": directive.get("output_queue_aliases") or directive["output_queues"],
                    **_span(mine),
                    **sums,
                    "waiting": waiting,
                    "consumers": consumers,
                    "rate": task_rate,
                    "eta_seconds": eta(remaining, task_rate),
                    "health": state,
                    "health_reason": reason,
                    "taskforces": views,
                }
            )
        state, reason = self.workflow_health(taskforces)
        return {
            "workflow_id": workflow_id,
            "timestamp": now,
            "health": state,
            "health_reason": reason,
            "queue_depths_available": depths is not None,
            "tasks": tasks,
            "queues": [d.to_dict() for d in depths or []],
        }


def _taskforce_progress(tf: Doc, retries: int, now: float, workflow_active: bool) -> Doc:
    state, reason = health(tf, retries)
    return {
        "taskforce_uuid": tf["taskforce_uuid"],
        "cluster_location": tf["cluster_location"],
        "phase": tf["phase"],
        **counters_of(tf),
        "rate": rate(tf, now),
        "health": state,
        "health_reason": reason,
        "updated_ts": (tf.get(EVENT_COUNTERS) or {}).get("updated_ts"),
        "retried_as": tf.get(RETRIED_AS),
        "retryable": workflow_active and not tf.get(RETRIED_AS) and ended_in_failure(tf, retries),
    }


def _span(taskforces: list[Doc]) -> Doc:
    """When the task's first cluster was submitted, and when its last taskforce ended (None while any is live)."""
    submits = [
        entry["timestamp"]
        for tf in taskforces
        for entry in tf["phase_change_log"]
        if entry["target_phase"] == Phase.CONDOR_SUBMIT and entry["was_successful"]
    ]
    ends = [
        max((e["timestamp"] for e in tf["phase_change_log"] if e["target_phase"] in ENDING_PHASES), default=None)
        for tf in taskforces
    ]
    ended = taskforces and all(tf["phase"] in ENDING_PHASES for tf in taskforces) and None not in ends
    return {
        "started_ts": min(submits, default=None),
        "ended_ts": max(e for e in ends if e is not None) if ended else None,
    }


def _total(values: list[int | None]) -> int | None:
    """The sum, or None when any figure is unknown."""
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)
