"""Retention: deactivated workflows older than ``RETENTION_DAYS`` are archived, then deleted from the live
collections with their task directives, taskforces, job logs and queue profiles; archives older than
``ARCHIVE_RETENTION_DAYS`` are purged. Every deletion is logged.

Crash-safe order: the archive document is written first (once: a repeat never overwrites it), then the children
are deleted, then the workflow, so a pass interrupted anywhere is completed by the next one.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from mqs_client import ManagedMQSClient
from wms.config import WMSConfig
from wms.database.store import Store, public

LOGGER = logging.getLogger(__name__)
DAY = 86400.0
BATCH = 100


class Retention:
    """One pass archives due workflows and purges old archives."""

    def __init__(self, store: Store, mqs: ManagedMQSClient, config: WMSConfig) -> None:
        self.store = store
        self.mqs = mqs
        self.config = config

    async def one_pass(self) -> bool:
        """Run one pass; True when a full batch was archived (more may be due)."""
        cutoff = time.time() - self.config.retention_days * DAY
        due = await self.store.workflows.find(
            {"deactivated": {"$ne": None}, "deactivated_ts": {"$lt": cutoff}}, {"_id": False}
        ).to_list(BATCH)
        archived = 0
        for workflow in due:
            archived += await self.archive(workflow)
        await self.purge(archived_before=time.time() - self.config.archive_retention_days * DAY)
        return archived == BATCH

    async def archive(self, workflow: dict[str, Any]) -> int:
        """Archive one workflow and delete it from the live collections; 0 when its queues still exist."""
        wid = workflow["workflow_id"]
        profiles = await self.mqs.forget(wid)
        if profiles is None:
            LOGGER.info("retention: workflow %s waits for its queues to be deleted", wid)
            return 0
        query = {"workflow_id": wid}
        if await self.store.archive.find_one(query, {"_id": True}) is None:
            directives = await self.store.task_directives.find(query, {"_id": False}).to_list(None)
            taskforces = await self.store.taskforces.find(query, {"_id": False}).to_list(None)
            await self.store.archive.insert_one(
                {
                    "workflow_id": wid,
                    "archived_ts": time.time(),
                    "workflow": public(workflow),
                    "task_directives": [public(d) for d in directives],
                    "taskforces": [public(t) for t in taskforces],
                    "mq_profiles": profiles,
                }
            )
        uuids = [t["taskforce_uuid"] async for t in self.store.taskforces.find(query, {"taskforce_uuid": True})]
        n_logs = (await self.store.task_logs.delete_many({"taskforce_uuid": {"$in": uuids}})).deleted_count
        n_tf = (await self.store.taskforces.delete_many(query)).deleted_count
        n_td = (await self.store.task_directives.delete_many(query)).deleted_count
        await self.store.workflows.delete_one(query)
        LOGGER.info(
            "retention: archived and deleted workflow %s (%s %.1f days ago): %d task directives, %d taskforces, "
            "%d job logs, %d queue profiles",
            wid,
            workflow["deactivated"],
            (time.time() - workflow["deactivated_ts"]) / DAY,
            n_td,
            n_tf,
            n_logs,
            len(profiles),
        )
        return 1

    async def purge(self, *, archived_before: float | None = None, workflow_ids: list[str] | None = None) -> list[str]:
        """Delete archived workflows for good; the ids purged."""
        clauses: list[dict[str, Any]] = []
        if archived_before is not None:
            clauses.append({"archived_ts": {"$lt": archived_before}})
        if workflow_ids is not None:
            clauses.append({"workflow_id": {"$in": workflow_ids}})
        if not clauses:
            return []
        query = clauses[0] if len(clauses) == 1 else {"$or": clauses}
        ids = [d["workflow_id"] async for d in self.store.archive.find(query, {"workflow_id": True})]
        if ids:
            await self.store.archive.delete_many({"workflow_id": {"$in": ids}})
            for wid in ids:
                LOGGER.info("retention: purged archived workflow %s", wid)
        return ids
