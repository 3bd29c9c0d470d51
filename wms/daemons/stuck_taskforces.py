"""Ends stopped taskforces that never got a cluster: ``pending-stopper`` without ``cluster_id`` -> ``condor-complete``.

The TMS is offered only ``pending-stopper`` taskforces with a cluster (it has jobs to remove), so one stopped before
any submit would otherwise wait forever. Its end phase is ``condor-complete`` (no cluster is in the queue), not
``condor-rm``, which waits for the watcher to report a cluster leaving the queue.

A TMS may still be submitting a taskforce that was ``pending-starter`` when it was stopped: its late
``condor-submit`` records the cluster on the ``pending-stopper`` taskforce, so that the stopper removes the jobs. So
a pass first stamps each such taskforce with the time it first sees it (``_unsubmitted_since``) and ends it only
``UNSUBMITTED_STOP_GRACE_SECONDS`` later, by one conditional move per taskforce that requires it to be still without
a cluster: of that move and a late submit, whichever comes first wins. A submit later than the grace is refused
(409) and the TMS removes the cluster it submitted.
"""

from __future__ import annotations

import time

from wms.database.store import UNSUBMITTED_SINCE, Store
from wms.lifecycle import Lifecycle, Phase

SOURCE = "Stuck Taskforce Sweeper"
BATCH = 200


class StuckTaskforces:
    """One pass stamps newly stuck taskforces and ends those stuck for longer than the grace."""

    def __init__(self, store: Store, lifecycle: Lifecycle, grace_seconds: float) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.grace = grace_seconds

    async def one_pass(self) -> bool:
        """Run one pass; True when a full batch was ended (more may be due)."""
        stuck = {"phase": str(Phase.PENDING_STOPPER), "cluster_id": None}
        now = time.time()
        await self.store.taskforces.update_many({**stuck, UNSUBMITTED_SINCE: None}, {"$set": {UNSUBMITTED_SINCE: now}})
        due = await self.store.taskforces.find(
            {**stuck, UNSUBMITTED_SINCE: {"$lte": now - self.grace}}, {"_id": False, "taskforce_uuid": True}
        ).to_list(BATCH)
        await self.lifecycle.move_each(
            [{"taskforce_uuid": doc["taskforce_uuid"], "cluster_id": None} for doc in due],
            Phase.CONDOR_COMPLETE,
            source_entity=SOURCE,
            context=f"stopped before any cluster was submitted; ended after a {self.grace:g} s grace for a late submit",
        )
        return len(due) == BATCH
