"""Failed events: move a workflow's failed events back to the input queues they failed from (after a fix).

Only the owner (or an admin) may, only while the workflow is active, and only to the workflow's own input queues:
an event naming any other queue (its header is written by a pilot, but anyone holding the public failed-events
token can publish one) stays where it is.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pika.exceptions

from mqs_client import FAILED_EVENTS_ALIAS, ManagedMQSClient, TryAgainLater
from mqs_client.requeue import requeue_failed_events
from wms.auth import Caller
from wms.database.store import Store
from wms.operations.errors import OperationError
from wms.operations.workflows import Workflows


class FailedEvents:
    """Requeue failed events."""

    def __init__(self, store: Store, mqs: ManagedMQSClient, workflows: Workflows) -> None:
        self.store = store
        self.mqs = mqs
        self.workflows = workflows

    async def requeue(self, workflow_id: str, caller: Caller) -> dict[str, Any]:
        """Move the failed events ready now back to their input queues; what moved and what stayed."""
        workflow = await self.workflows.get(workflow_id, caller)
        if workflow["deactivated"]:
            raise OperationError(422, f"cannot requeue the failed events of a deactivated workflow ({workflow_id})")
        failed = [p for p in await self.mqs.get_public_profiles(workflow_id) if p.alias == FAILED_EVENTS_ALIAS]
        if not failed or not failed[0].is_activated:
            raise OperationError(409, f"workflow {workflow_id} has no active failed-events queue")
        directives = await self.store.task_directives.find({"workflow_id": workflow_id}, {"_id": False}).to_list(None)
        inputs = sorted({mqid for d in directives for mqid in d["input_queues"]})
        profiles = {p.mqid: p for p in await self.mqs.get_profiles(inputs)}
        try:
            result = await asyncio.to_thread(requeue_failed_events, failed[0], profiles)
        except pika.exceptions.AMQPError as exc:
            raise TryAgainLater(f"broker error while requeueing failed events: {exc!r}") from exc
        return {
            "workflow_id": workflow_id,
            "n_requeued": sum(result.moved.values()),
            "requeued_by_queue": result.moved,
            "n_kept": result.kept,
        }
