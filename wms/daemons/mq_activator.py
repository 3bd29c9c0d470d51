"""Workflow MQ activator: activates the queues of new workflows, advances their taskforces, retires old queues.

A pass reads what waits with indexed queries only, activates each workflow's queues through the MQS (highest
priority first), then advances the taskforces and sets the workflows' activated flags in one bulk write each.
Failed activations ("try again later", broker down) are logged on every taskforce of the workflow as a failed
``pre-launch`` attempt and retried with exponential back-off; the taskforces stay in ``pre-mq-activation``.
A workflow deactivated while its queues are being activated is safe: the same pass retires its queues afterwards.
Before retiring a deactivated workflow's queues, a pass stops its live taskforces (``stop_taskforces``, as the
deactivation itself does): a deactivation interrupted between setting the flag and moving the taskforces is completed,
and so is a taskforce written under a workflow deactivated meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pymongo import UpdateOne

from mqs_client.interface import MQSClient, MQSError, TryAgainLater
from wms.config import WMSConfig
from wms.daemons.loop import Wakeup
from wms.database.store import DEACTIVATION_KINDS, MQ_ACTIVATED_TS, MQ_FAILURES, MQ_RETIRED, MQ_RETRY_AT, Store
from wms.lifecycle import Lifecycle, Phase
from wms.operations.workflows import stop_taskforces

LOGGER = logging.getLogger(__name__)
SOURCE = "Workflow MQ Activator"
SCAN_LIMIT = 500
ACTIVATION_CONCURRENCY = 8


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
        waiting = (
            await self.store.taskforces.find(
                {"phase": str(Phase.PRE_MQ_ACTIVATION)}, {"_id": False, "workflow_id": True, "timestamp": True}
            )
            .limit(SCAN_LIMIT)
            .to_list()
        )
        oldest: dict[str, float] = {}
        for doc in waiting:
            oldest[doc["workflow_id"]] = min(doc["timestamp"], oldest.get(doc["workflow_id"], doc["timestamp"]))
        # not yet activated, by index; the few others (a taskforce added to an activated workflow) one by one
        pending = (
            await self.store.workflows.find({"deactivated": None, MQ_ACTIVATED_TS: None}).limit(SCAN_LIMIT).to_list()
        )
        workflows = {wf["workflow_id"]: wf for wf in pending}
        for wid in oldest.keys() - workflows.keys():
            if (wf := await self.store.workflows.find_one({"workflow_id": wid})) is not None:
                workflows[wid] = wf
        await self._reap_orphans([wid for wid, ts in oldest.items() if wid not in workflows and self._is_stale(ts)])
        for wid, wf in workflows.items():
            if wf["deactivated"] and wid in oldest:
                await self._stop(wid, wf["deactivated"])
        already = [wid for wid, wf in workflows.items() if wf.get(MQ_ACTIVATED_TS) and not wf["deactivated"]]
        activated = await self._activate_all(
            [
                wf
                for wf in sorted(workflows.values(), key=lambda w: (-w["priority"], w["timestamp"]))
                if not (wf.get(MQ_ACTIVATED_TS) or wf["deactivated"])
            ]
        )
        moved = await self._advance(already, "workflow queues already active")
        moved += await self._advance(activated, "message queues activated")
        if activated:  # taskforces first, then the flags: a crash in between only repeats an idempotent activation
            await self.store.workflows.bulk_write(
                [UpdateOne({"workflow_id": wid, MQ_ACTIVATED_TS: None}, {"$set": {MQ_ACTIVATED_TS: time.time()}})
                 for wid in activated],
                ordered=False,
            )  # fmt: skip
            LOGGER.info(
                "%d workflow(s) had their queues activated; %d taskforces ready to launch", len(activated), moved
            )
        await self._retire_queues()
        return bool(moved) and SCAN_LIMIT in (len(waiting), len(pending))

    def _is_stale(self, timestamp: float) -> bool:
        return time.time() - timestamp > self.config.orphan_grace_seconds

    async def _activate_all(self, workflows: list[dict[str, Any]]) -> list[str]:
        """Activate the workflows' queues, started in the given order, a few at a time (each mostly waits on the
        broker and the database); the ids of those now active."""
        slots = asyncio.Semaphore(ACTIVATION_CONCURRENCY)

        async def activate(wf: dict[str, Any]) -> bool:
            async with slots:
                return await self._activate(wf)

        async with asyncio.TaskGroup() as group:
            tasks = [(wf["workflow_id"], group.create_task(activate(wf))) for wf in workflows]
        return [wid for wid, task in tasks if task.result()]

    async def _activate(self, wf: dict[str, Any]) -> bool:
        """Activate the workflow's queues unless its retry time is still ahead; True when they are active."""
        if wf.get(MQ_RETRY_AT, 0) > time.time():
            return False
        try:
            await self.mqs.activate(wf["workflow_id"], wf["priority"])
        except (TryAgainLater, MQSError, OSError) as exc:
            await self._activation_failed(wf, exc)
            return False
        return True

    async def _advance(self, workflow_ids: list[str], context: str) -> int:
        """Move the waiting taskforces of these workflows to ``pre-launch``; wake launch control if any moved."""
        moved = await self.lifecycle.move_each(
            [{"workflow_id": wid} for wid in workflow_ids], Phase.PRE_LAUNCH, source_entity=SOURCE, context=context
        )
        if moved:
            self.launch_wakeup.set()
        return moved

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
        for kind in DEACTIVATION_KINDS:  # equality on both keys of an index (``$ne``/``$in`` would read every workflow)
            cursor = self.store.workflows.find(
                {"deactivated": kind, MQ_RETIRED: False}, {"_id": False, "workflow_id": True}
            ).limit(100)
            for wf in await cursor.to_list():
                await self._stop(wf["workflow_id"], kind)
                try:
                    await self.mqs.deactivate(wf["workflow_id"])
                except Exception as exc:  # the MQS may be down: try again next pass
                    LOGGER.warning("workflow %s: retiring queues failed, will retry: %s", wf["workflow_id"], exc)
                    continue
                await self.store.workflows.update_one({"workflow_id": wf["workflow_id"]}, {"$set": {MQ_RETIRED: True}})
                LOGGER.info("workflow %s: queues scheduled for deletion", wf["workflow_id"])

    async def _stop(self, workflow_id: str, kind: str) -> None:
        await stop_taskforces(self.lifecycle, workflow_id, kind, SOURCE, f"workflow {kind.lower()}: taskforces stopped")

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
