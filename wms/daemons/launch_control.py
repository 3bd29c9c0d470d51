"""Taskforce launch control: releases ``pre-launch`` taskforces of active workflows to the TMS (``pending-starter``).

Releases many taskforces per pass (one bulk write), highest priority first, then oldest. A taskforce whose workflow
is deactivated (or gone) is never released: it is sent to ``pending-stopper`` instead. The workflow is read before
the release; a deactivation in between is safe, since deactivating moves the workflow's taskforces after setting
its flag, from ``pending-starter`` as well.
"""

from __future__ import annotations

from wms.config import WMSConfig
from wms.database.store import Store
from wms.lifecycle import Lifecycle, Phase

SOURCE = "Taskforce Launch Control"


class LaunchControl:
    """One pass moves up to ``launch_batch_size`` taskforces to ``pending-starter``."""

    def __init__(self, store: Store, lifecycle: Lifecycle, config: WMSConfig) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.batch = config.launch_batch_size

    async def one_pass(self) -> bool:
        """Run one pass; True when a full batch was handled (more may wait)."""
        cursor = (
            self.store.taskforces.find(
                {"phase": str(Phase.PRE_LAUNCH)}, {"_id": False, "taskforce_uuid": True, "workflow_id": True}
            )
            .sort([("priority", -1), ("timestamp", 1)])
            .limit(self.batch)
        )
        docs = await cursor.to_list(None)
        workflows = await self.store.find_each(
            self.store.workflows,
            "workflow_id",
            [doc["workflow_id"] for doc in docs],
            {"_id": False, "workflow_id": True, "deactivated": True},
        )
        active = {wf["workflow_id"] for wf in workflows if wf["deactivated"] is None}
        await self.lifecycle.move_each(
            [{"taskforce_uuid": doc["taskforce_uuid"]} for doc in docs if doc["workflow_id"] in active],
            Phase.PENDING_STARTER,
            source_entity=SOURCE,
            context="released to the TMS",
        )
        await self.lifecycle.move_each(
            [{"taskforce_uuid": doc["taskforce_uuid"]} for doc in docs if doc["workflow_id"] not in active],
            Phase.PENDING_STOPPER,
            source_entity=SOURCE,
            context="not released: its workflow is deactivated",
        )
        return len(docs) == self.batch
