"""What a TMS asks the WMS for and confirms, and what pilots ask for: work for its schedd, submits, removals,
completions, failed attempts, statuses, job logs, queue tokens.

Invariants held here:
- every confirmation is one conditional phase move (``wms.lifecycle``); repeating one that already took effect
  succeeds, so a TMS may retry any call;
- a cluster submitted after its workflow was deactivated is recorded on the ``pending-stopper`` taskforce (one
  conditional update on a taskforce without a cluster) so that the stopper removes its jobs; once that taskforce has
  ended (``wms.daemons.stuck_taskforces``) the submit is refused and the TMS removes the cluster itself;
- a reported status or counter reaches only existing taskforces, one write each (a re-sent report is harmless);
- a running job's log tail never replaces the record of that job's end;
- a queue token goes only to a pilot of an active workflow, for one of that workflow's queues.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from mqs_client import ManagedMQSClient
from mqs_client.interface import FAILED_EVENTS_ALIAS, MQProfile, MQSError, MQSNotFound
from wms import pilot_credentials
from wms.config import WMSConfig
from wms.database.store import RM_FAILURES, SUBMIT_FAILURES, WRITE_CHUNK, Doc, Store, append_log, public
from wms.lifecycle import Lifecycle, Phase, log_entry
from wms.operations.errors import OperationError
from wms.progress import RATE_TS, counters_update

LOGGER = logging.getLogger(__name__)
DUPLICATE_KEY = 11000
SOURCE = "TMS"
# a failed action's phase of origin and the counter of its attempts, by the phase it failed to reach
FAILED_ACTIONS = {
    Phase.CONDOR_SUBMIT: (Phase.PENDING_STARTER, SUBMIT_FAILURES),
    Phase.CONDOR_RM: (Phase.PENDING_STOPPER, RM_FAILURES),
}


class TMSActions:
    """The TMS's and pilots' calls, on one store and MQS."""

    def __init__(self, store: Store, lifecycle: Lifecycle, mqs: ManagedMQSClient, config: WMSConfig) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.mqs = mqs
        self.config = config

    async def _current(self, uuid: str) -> Doc:
        doc = await self.store.taskforces.find_one({"taskforce_uuid": uuid}, {"_id": False})
        if doc is None:
            raise OperationError(404, f"no taskforce found with uuid: {uuid}")
        return doc

    async def _next(self, query: Doc, order: list[tuple[str, int]]) -> Doc | None:
        found = await (
            self.store.taskforces.find(query, {"_id": False})
            .sort(order)
            .limit(1)
            .to_list(1)
        )
        return found[0] if found else None

    async def next_to_start(self, schedd: str) -> Doc | None:
        """The schedd's next taskforce to submit (highest priority, then fewest failed submits, then oldest) with
        its task directive, queue profiles (the workflow's failed-events queue included) and pilot credential."""
        query = {
            "schedd": schedd,
            "phase": str(Phase.PENDING_STARTER),
            SUBMIT_FAILURES: {"$lte": self.config.tms_action_retries},
        }
        taskforce = await self._next(query, [("priority", -1), (SUBMIT_FAILURES, 1), ("timestamp", 1)])
        if taskforce is None:
            return None
        directive = await self.store.task_directives.find_one({"task_id": taskforce["task_id"]}, {"_id": False})
        if directive is None:
            raise OperationError(409, f"taskforce {taskforce['taskforce_uuid']} has no task directive")
        profiles = await self.mqs.get_profiles(directive["input_queues"] + directive["output_queues"])
        workflow_id = taskforce["workflow_id"]
        return {
            "taskforce": public(taskforce),
            "task_directive": public(directive),
            "mqprofiles": [p.to_dict() for p in profiles + await self._failed_events_queue(workflow_id)],
            "pilot_credential": pilot_credentials.issue(self.config, workflow_id, taskforce.get("worker_config") or {}),
        }

    async def _failed_events_queue(self, workflow_id: str) -> list[MQProfile]:
        """The workflow's failed-events queue profile, when the MQS has one."""
        try:
            profiles = await self.mqs.get_public_profiles(workflow_id)
        except MQSNotFound:
            return []
        return [p for p in profiles if p.alias == FAILED_EVENTS_ALIAS]

    async def submitted(self, uuid: str, fields: Doc) -> None:
        """Record the submitted cluster (``cluster_id``, ``n_workers``, ...) and move to ``condor-submit``; a late
        submit is recorded for removal (see the module's invariants)."""
        context = f"submitted cluster {fields['cluster_id']} with {fields['n_workers']} jobs"
        if await self.lifecycle.move(uuid, Phase.CONDOR_SUBMIT, source_entity=SOURCE, context=context, extra=fields):
            return
        late = f"cluster {fields['cluster_id']} submitted after deactivation; it will be removed"
        recorded = await self.store.taskforces.find_one_and_update(
            {"taskforce_uuid": uuid, "phase": str(Phase.PENDING_STOPPER), "cluster_id": None},
            {"$set": fields, **append_log(log_entry(Phase.CONDOR_SUBMIT, False, SOURCE, late))},
        )
        if recorded is not None:
            LOGGER.warning("taskforce %s: late submit recorded for removal", uuid)
            return
        doc = await self._current(uuid)
        if doc["cluster_id"] != fields["cluster_id"]:
            raise OperationError(409, f"taskforce {uuid} is in phase {doc['phase']}, not pending-starter")

    async def action_failed(self, uuid: str, target: Phase, error: str) -> None:
        """Log a failed attempt to reach ``target`` (phase unchanged, attempt counted)."""
        origin, counter = FAILED_ACTIONS[target]
        query = {"taskforce_uuid": uuid, "phase": str(origin)}
        if not await self.lifecycle.record_failure(query, target, source_entity=SOURCE, context=error, counter=counter):
            doc = await self._current(uuid)
            raise OperationError(409, f"taskforce {uuid} is in phase {doc['phase']}, not {origin}")

    async def next_to_stop(self, schedd: str) -> Doc | None:
        """The schedd's oldest taskforce whose jobs must be removed; only those with a submitted cluster (the
        others are ended by ``wms.daemons.stuck_taskforces``)."""
        query = {
            "schedd": schedd,
            "phase": str(Phase.PENDING_STOPPER),
            "cluster_id": {"$ne": None},
            RM_FAILURES: {"$lte": self.config.tms_action_retries},
        }
        found = await self._next(query, [("timestamp", 1)])
        return public(found) if found else None

    async def confirm(self, uuid: str, target: Phase, context: str, source_event_time: float | None = None) -> None:
        """Move the taskforce to ``target`` (``condor-rm``, ``condor-complete``); already there is fine."""
        moved = await self.lifecycle.move(
            uuid, target, source_entity=SOURCE, context=context, source_event_time=source_event_time
        )
        if moved is None:
            doc = await self._current(uuid)
            if doc["phase"] != str(target):
                raise OperationError(409, f"taskforce {uuid} in phase {doc['phase']} cannot move to {target}")

    async def report_statuses(self, errors: Doc, statuses: Doc, counters: Doc) -> list[Doc]:
        """Store top task errors, compound statuses and event counters (with a rate sample in the same write,
        ``wms.progress.counters_update``), one write per taskforce, in short bulk commands; the result of each uuid,
        unknown ones failed (found by the writes that matched nothing, so known ones cost no extra read)."""
        updates: dict[str, Doc] = {}
        for uuid, value in errors.items():
            updates.setdefault(uuid, {})["top_task_errors"] = value
        for uuid, value in statuses.items():
            updates.setdefault(uuid, {})["compound_statuses"] = value
        for uuid in counters:
            updates.setdefault(uuid, {})
        coll = self.store.taskforces
        projection = {"_id": False, "taskforce_uuid": True, RATE_TS: True}
        counted = [u for u in updates if u in counters]
        samples = {
            d["taskforce_uuid"]: d.get(RATE_TS) or []
            for d in await self.store.find_each(coll, "taskforce_uuid", counted, projection)
        }
        unknown = {u for u in counters if u not in samples}
        now = time.time()
        written, writes = [], []
        for uuid, fields in updates.items():
            if uuid in unknown:
                continue
            update: dict[str, Any] = counters_update(counters[uuid], samples[uuid], now) if uuid in counters else {}
            update.setdefault("$set", {}).update(fields)
            written.append(uuid)
            writes.append(UpdateOne({"taskforce_uuid": uuid}, update))
        matched = await self.store.write_each(coll, writes)
        for n, found in enumerate(matched):  # a chunk that matched fewer than it wrote: which uuids are unknown
            chunk = written[n * WRITE_CHUNK : (n + 1) * WRITE_CHUNK]
            if found < len(chunk):
                known = await self.store.find_each(coll, "taskforce_uuid", chunk, {"taskforce_uuid": True})
                unknown |= set(chunk) - {d["taskforce_uuid"] for d in known}
        return [
            {"uuid": u, "status": "failed", "error": "no taskforce found with uuid"}
            if u in unknown
            else {"uuid": u, "status": "updated"}
            for u in updates
        ]

    async def store_logs(self, uuid: str, jobs: list[Doc]) -> None:
        """Upsert each job's log; a repeated report replaces the same documents. A running job's tail never replaces
        the record of its end (a late tail finds no record to update and its insert hits the unique index)."""
        await self._current(uuid)
        try:
            await self.store.write_each(
                self.store.task_logs,
                [
                    UpdateOne(
                        {"taskforce_uuid": uuid, "job_id": job["job_id"]}
                        | ({"ended_ts": None} if job["ended_ts"] is None else {}),
                        {"$set": {**job, "taskforce_uuid": uuid}},
                        upsert=True,
                    )
                    for job in jobs
                ],
            )
        except BulkWriteError as exc:
            if any(error.get("code") != DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
                raise
            LOGGER.debug("taskforce %s: tails of ended jobs kept over late running ones", uuid)
        LOGGER.info("taskforce %s: logs of %d jobs stored", uuid, len(jobs))

    async def queue_token(self, workflow_id: str, queue: str) -> MQProfile:
        """A fresh token for one queue of an active workflow."""
        workflow = await self.store.workflows.find_one({"workflow_id": workflow_id}, {"_id": False})
        if workflow is None:
            raise OperationError(404, f"no workflow found with id: {workflow_id}")
        if workflow["deactivated"]:
            state = workflow["deactivated"].lower()
            raise OperationError(409, f"workflow {workflow_id} is {state}: no new queue tokens")
        try:
            return await self.mqs.renew_token(workflow_id, queue)
        except MQSNotFound as exc:
            raise OperationError(404, f"workflow {workflow_id} has no queue {queue}") from exc
        except MQSError as exc:
            raise OperationError(409, f"queue {queue} of workflow {workflow_id}: {exc}") from exc
