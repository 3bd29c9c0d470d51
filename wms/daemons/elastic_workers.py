"""Elastic workers: start workers for events that no worker consumes (as dask-jobqueue's ``adapt()`` does).

A pass reads the broker's figures for the queues of every active workflow, a page of workflows at a time
(``mqs.queue_depths_of``: one management call per page, whatever the number of workflows). For every task with an
input queue holding ready events and no consumer, and none of whose taskforces is live (each ended, or its submit was
given up), it adds one taskforce per cluster location of the task, with the task's first taskforce's ``n_workers``,
through the same add-workers operation users call (``source_entity`` ``TMS``): the per-task cap on added taskforces
and the deactivated-workflow refusal hold as for any add. A task gets at most one such addition per
``ELASTIC_WORKERS_MIN_GAP_SECONDS`` (claimed by one conditional update on its task directive, so two WMS instances
never both add). A remote MQS without queue depths turns the daemon into a no-op.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from mqs_client import MQSClient, MQSNotSupported, TryAgainLater
from wms.auth import Caller, Role
from wms.config import WMSConfig
from wms.database.store import MQ_ACTIVATED_TS, SUBMIT_FAILURES, Store
from wms.lifecycle import LIVE_PHASES, Phase
from wms.operations.errors import OperationError
from wms.operations.taskforces import Taskforces

LOGGER = logging.getLogger(__name__)
CALLER = Caller(subject="elastic-workers", roles=frozenset({Role.TMS}))
ELASTIC_ADDED_AT = "_elastic_added_at"  # task directive: when elastic workers last added a taskforce
PAGE = 500  # active workflows looked at per database read and broker read


class ElasticWorkers:
    """One pass adds taskforces for stranded events."""

    def __init__(self, store: Store, mqs: MQSClient, taskforces: Taskforces, config: WMSConfig) -> None:
        self.store = store
        self.mqs = mqs
        self.taskforces = taskforces
        self.config = config
        self.supported = True

    async def one_pass(self) -> bool:
        """Look at every active workflow with activated queues, a page at a time (one database read and one broker
        read per page); never reports more work (it runs on its period)."""
        if not self.supported:
            return False
        query = {"deactivated": None, MQ_ACTIVATED_TS: {"$ne": None}}
        after = None
        while True:
            page = await self.store.page(
                self.store.workflows, query, {"_id": True, "workflow_id": True}, after, PAGE
            ).to_list(None)
            if not page or not await self._check([w["workflow_id"] for w in page]) or len(page) < PAGE:
                return False
            after = page[-1]["_id"]

    async def _check(self, workflow_ids: list[str]) -> bool:
        """Start workers for the stranded events of these workflows; False when the broker's figures are missing."""
        try:
            depths = await self.mqs.queue_depths_of(workflow_ids)
        except MQSNotSupported:
            LOGGER.warning("elastic workers off: the MQS reports no queue depths")
            self.supported = False
            return False
        except TryAgainLater as exc:
            LOGGER.info("elastic workers: no queue figures now: %s", exc)
            return False
        for workflow_id, figures in depths.items():
            stranded = {d.mqid for d in figures if (d.ready or 0) > 0 and d.consumers == 0}
            if not stranded:
                continue
            directives = await self.store.task_directives.find({"workflow_id": workflow_id}, {"_id": False}).to_list(
                None
            )
            for directive in directives:
                if stranded & set(directive["input_queues"]):
                    await self._start_workers(directive)
        return True

    async def _start_workers(self, directive: dict[str, Any]) -> None:
        task_id = directive["task_id"]
        taskforces = await self.store.taskforces.find(
            {"task_id": task_id},
            {"_id": False, "phase": True, SUBMIT_FAILURES: True, "n_workers": True, "timestamp": True},
        ).to_list(None)
        if not taskforces or any(self._is_live(tf) for tf in taskforces):
            return
        if not await self._claim(task_id):
            return
        n_workers = max(1, int(min(taskforces, key=lambda tf: tf["timestamp"])["n_workers"] or 1))
        for location in directive["cluster_locations"]:
            try:
                added = await self.taskforces.add_workers(task_id, location, n_workers, CALLER)
            except OperationError as exc:
                LOGGER.warning("elastic workers: task %s at %s: %s", task_id, location, exc.detail)
                continue
            LOGGER.info(
                "elastic workers: events wait unconsumed for task %s: taskforce %s (%s workers) added at %s",
                task_id,
                added["taskforce_uuid"],
                added["n_workers"],
                location,
            )

    def _is_live(self, taskforce: dict[str, Any]) -> bool:
        """Not ended, and not a submission the TMS gave up on."""
        gave_up = taskforce.get(SUBMIT_FAILURES, 0) > self.config.tms_action_retries
        return Phase(taskforce["phase"]) in LIVE_PHASES and not (
            taskforce["phase"] == Phase.PENDING_STARTER and gave_up
        )

    async def _claim(self, task_id: str) -> bool:
        """Record this addition on the task directive unless one happened within the gap (one conditional update)."""
        now = time.time()
        for condition in ({"$exists": False}, {"$lt": now - self.config.elastic_min_gap_seconds}):
            result = await self.store.task_directives.update_one(
                {"task_id": task_id, ELASTIC_ADDED_AT: condition}, {"$set": {ELASTIC_ADDED_AT: now}}
            )
            if result.modified_count:
                return True
        return False
