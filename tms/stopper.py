"""The stopper: removes the jobs of this schedd's pending-stopper taskforces and confirms to the WMS."""

from __future__ import annotations

import asyncio
import logging

from ewms_client import WMSError
from tms import metrics
from tms.backends.base import Backend, BackendError
from tms.config import TMSConfig
from tms.daemon import wait_or_stop
from tms.wms_client import WMSClient

LOGGER = logging.getLogger(__name__)


class Stopper:
    """One :meth:`step` stops at most one taskforce."""

    def __init__(self, config: TMSConfig, wms: WMSClient, backend: Backend, stop: asyncio.Event) -> None:
        self.config = config
        self.wms = wms
        self.backend = backend
        self.stop = stop

    async def step(self) -> bool:
        """Stop the next pending-stopper taskforce, if any; True when there was one."""
        taskforce = await self.wms.get_pending_stopper(self.config.schedd)
        if not taskforce:
            return False
        uuid = str(taskforce["taskforce_uuid"])
        cluster_id = taskforce.get("cluster_id")
        if cluster_id is not None:
            try:
                n = await self.backend.remove(int(cluster_id), f"Requested by EWMS (taskforce {uuid})")
            except BackendError as exc:
                LOGGER.error("stopper: cannot remove cluster %s of %s: %s", cluster_id, uuid, exc)
                metrics.REMOVALS.labels("failed").inc()
                try:
                    await self.wms.fail_condor_rm(uuid, str(exc)[:2000])
                except WMSError as refused:
                    LOGGER.warning("stopper: WMS did not record the failure of %s: %s", uuid, refused.detail)
                await wait_or_stop(self.stop, self.config.error_wait)
                return True
            LOGGER.info("stopper: removed %d jobs of cluster %s for %s", n, cluster_id, uuid)
        else:
            LOGGER.info("stopper: %s has no cluster: nothing to remove", uuid)
        try:
            await self.wms.confirm_condor_rm(uuid)
        except WMSError as exc:
            if exc.status not in (404, 409):
                raise
            # e.g. the watcher saw the cluster leave the queue and reported condor-complete first
            LOGGER.info("stopper: WMS did not take condor-rm of %s: %s", uuid, exc.detail)
            return True
        metrics.REMOVALS.labels("confirmed").inc()
        return True
