"""Workflow MQ activator: activates the queues of new workflows, advances their taskforces, retires old queues.

Failed activations ("try again later", broker down) are logged on every taskforce of the workflow as a failed
``pre-launch`` attempt and retried with exponential back-off; the taskforces stay in ``pre-mq-activation``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from mqs_client.interface import MQSClient, MQSError, TryAgainLater
from wms.config import WMSConfig
from wms.daemons.loop import Wakeup
from wms.database.store import MQ_ACTIVATED_TS, MQ_FAILURES, MQ_RETRY_AT, Store
from wms.lifecycle import Lifecycle, Phase

LOGGER = logging.getLogger(__name__)
SOURCE = "Workflow MQ Activator"
MQ_RETIRED = "_mq_retired"
SCAN_LIMIT = 500


class MQActivator:
    """One pass activates what waits, advances taskforces of activated workflows and retires deactivated queues."""

    def __init__(
        self, store: Store, lifecycle: Lifecycle, mqs: MQSClient, config: WMSConfig, launch_wakeup: Wakeup
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.mqs = mqs
        self.config = config
        self.launch_wakeup = launch_wakeup

    async def one_pass(self) -> bool:
        """Run one pass; True when more work is waiting."""
        waiting = await self.store.taskforces.find(
            {"phase": str(Phase.PRE_MQ_ACTIVATION)}, {"_id": False, "workflow_id": True, "timestamp": True}
        ).to_list(SCAN_LIMIT)
        oldest: dict[str, float] = {}
        for doc in waiting:
            oldest[doc["workflow_id"]] = min(doc["timestamp"], oldest.get(doc["workflow_id"], doc["timestamp"]))
        workflows = await self.store.workflows.find({"workflow_id": {"$in": list(oldest)}}).to_list(None)
        known = {wf["workflow_id"] for wf in workflows}
        await self._reap_orphans([wid for wid, ts in oldest.items() if wid not in known and self._is_stale(ts)])
        for wf in sorted(workflows, key=lambda w: (-w["priority"], w["timestamp"])):
            await self._handle(wf)
        await self._retire_queues()
        return len(waiting) == SCAN_LIMIT

    def _is_stale(self, timestamp: float) -> bool:
        return time.time() - timestamp > self.config.orphan_grace_seconds

    async def _handle(self, wf: dict[str, Any]) -> None:
        wid = wf["workflow_id"]
        if wf["deactivated"]:
            return  # deactivation moves these taskforces itself
        if wf.get(MQ_ACTIVATED_TS):
            if await self.lifecycle.move_many(
                {"workflow_id": wid}, Phase.PRE_LAUNCH, source_entity=SOURCE, context="workflow queues already active"
            ):
                self.launch_wakeup.set()
            return
        if wf.get(MQ_RETRY_AT, 0) > time.time():
            return
        # the workflow may have been deactivated since this pass read it: never activate queues for it then
        if await self.store.workflows.count_documents({"workflow_id": wid, "deactivated": {"$eq": None}}) == 0:
            return
        try:
            await self.mqs.activate(wid, wf["priority"])
        except (TryAgainLater, MQSError, OSError) as exc:
            await self._activation_failed(wf, exc)
            return
        # taskforces first, then the workflow flag: a crash in between only repeats an idempotent activation
        moved = await self.lifecycle.move_many(
            {"workflow_id": wid}, Phase.PRE_LAUNCH, source_entity=SOURCE, context="message queues activated"
        )
        await self.store.workflows.update_one({"workflow_id": wid}, {"$set": {MQ_ACTIVATED_TS: time.time()}})
        LOGGER.info("workflow %s: queues activated, %d taskforces ready to launch", wid, moved)
        self.launch_wakeup.set()

    async def _activation_failed(self, wf: dict[str, Any], exc: BaseException) -> None:
        wid = wf["workflow_id"]
        failures = int(wf.get(MQ_FAILURES, 0)) + 1
        delay = min(self.config.mq_retry_min_seconds * 2 ** (failures - 1), self.config.mq_retry_max_seconds)
        context = f"queue activation failed (attempt {failures}, retry in {delay:.0f}s): {exc}"
        await self.lifecycle.record_failure(
            {"workflow_id": wid, "phase": str(Phase.PRE_MQ_ACTIVATION)},
            Phase.PRE_LAUNCH,
            source_entity=SOURCE,
            context=context,
        )
        await self.store.workflows.update_one(
            {"workflow_id": wid}, {"$set": {MQ_FAILURES: failures, MQ_RETRY_AT: time.time() + delay}}
        )
        LOGGER.warning("workflow %s: %s", wid, context)

    async def _retire_queues(self) -> None:
        cursor = self.store.workflows.find(
            {"deactivated": {"$ne": None}, MQ_RETIRED: {"$ne": True}}, {"_id": False, "workflow_id": True}
        )
        for wf in await cursor.to_list(100):
            try:
                await self.mqs.deactivate(wf["workflow_id"])
            except Exception as exc:  # the MQS may be down: try again next pass
                LOGGER.warning("workflow %s: retiring queues failed, will retry: %s", wf["workflow_id"], exc)
                continue
            await self.store.workflows.update_one({"workflow_id": wf["workflow_id"]}, {"$set": {MQ_RETIRED: True}})
            LOGGER.info("workflow %s: queues scheduled for deletion", wf["workflow_id"])

    async def _reap_orphans(self, workflow_ids: list[str]) -> None:
        """Delete children left by a request that crashed before writing its workflow (children are written first)."""
        if not workflow_ids:
            return
        query = {"workflow_id": {"$in": workflow_ids}}
        n_tf = (await self.store.taskforces.delete_many(query)).deleted_count
        n_td = (await self.store.task_directives.delete_many(query)).deleted_count
        LOGGER.warning(
            "orphans of unfinished requests %s deleted: %d taskforces, %d directives", workflow_ids, n_tf, n_td
        )
