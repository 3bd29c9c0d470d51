"""Taskforce launch control: releases ``pre-launch`` taskforces to the TMS (``pending-starter``).

Releases many taskforces per pass (one bulk write), highest priority first, then oldest.
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
        """Run one pass; True when a full batch was released (more may wait)."""
        cursor = (
            self.store.taskforces.find({"phase": str(Phase.PRE_LAUNCH)}, {"_id": False, "taskforce_uuid": True})
            .sort([("priority", -1), ("timestamp", 1)])
            .limit(self.batch)
        )
        docs = await cursor.to_list(None)
        await self.lifecycle.move_each(
            [{"taskforce_uuid": doc["taskforce_uuid"]} for doc in docs],
            Phase.PENDING_STARTER,
            source_entity=SOURCE,
            context="released to the TMS",
        )
        return len(docs) == self.batch
