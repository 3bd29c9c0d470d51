"""Routes the TMS calls: fetch work for its schedd, confirm submits/removals/completions, report statuses.

Every confirmation is a conditional phase move (``wms.lifecycle``); repeating one that already took effect is
answered 200, so a TMS may retry any call safely.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from wms.database.store import RM_FAILURES, SUBMIT_FAILURES, append_log, public
from wms.handlers.base import TMS, BaseHandler, Problem
from wms.handlers.pilots import starter_additions
from wms.lifecycle import Phase, log_entry
from wms.progress import RATE_TS, counters_update

LOGGER = logging.getLogger(__name__)
DUPLICATE_KEY = 11000
SOURCE = "TMS"


async def _current(handler: BaseHandler, uuid: str) -> dict[str, Any]:
    doc = await handler.wms.store.taskforces.find_one({"taskforce_uuid": uuid}, {"_id": False})
    if doc is None:
        raise Problem(404, f"no taskforce found with uuid: {uuid}")
    return doc


class PendingStarterHandler(BaseHandler):
    """``GET /v0/tms/pending-starter/taskforces?schedd=``: the next taskforce to submit, with what it needs."""

    ROUTE = "/tms/pending-starter/taskforces"
    ROLES = {"GET": TMS}

    async def get(self) -> None:
        """Highest priority first, then fewest failed submits, then oldest; ``{}`` when there is none."""
        store = self.wms.store
        found = await (
            store.taskforces.find(
                store.exact(
                    store.taskforces,
                    {
                        "schedd": self.get_query_argument("schedd"),
                        "phase": str(Phase.PENDING_STARTER),
                        SUBMIT_FAILURES: {"$lte": self.wms.config.tms_action_retries},
                    },
                ),
                {"_id": False},
            )
            .sort([("priority", -1), (SUBMIT_FAILURES, 1), ("timestamp", 1)])
            .limit(1)
            .to_list(1)
        )
        if not found:
            self.send({})
            return
        taskforce = found[0]
        directive = await store.task_directives.find_one({"task_id": taskforce["task_id"]}, {"_id": False})
        if directive is None:
            raise Problem(409, f"taskforce {taskforce['taskforce_uuid']} has no task directive")
        profiles = await self.wms.mqs.get_profiles(directive["input_queues"] + directive["output_queues"])
        extra = await starter_additions(self.wms, taskforce)
        self.send(
            {
                "taskforce": public(taskforce),
                "task_directive": public(directive),
                "mqprofiles": [p.to_dict() for p in profiles] + extra["failed_events"],
                "pilot_credential": extra["pilot_credential"],
            }
        )


class CondorSubmitHandler(BaseHandler):
    """``POST /v0/tms/condor-submit/taskforces/{taskforce_uuid}``."""

    ROUTE = "/tms/condor-submit/taskforces/{taskforce_uuid}"
    ROLES = {"POST": TMS}

    async def post(self, taskforce_uuid: str) -> None:
        """Record the submitted cluster and move to ``condor-submit``.

        If the workflow was deactivated while the TMS was submitting, the cluster is still recorded on the
        ``pending-stopper`` taskforce so that the stopper removes those jobs, within ``UNSUBMITTED_STOP_GRACE_SECONDS``;
        after that the taskforce has ended (``wms.daemons.stuck_taskforces``), the submit gets 409 and the TMS removes
        the cluster itself.
        """
        fields = {k: self.body[k] for k in ("cluster_id", "n_workers", "submit_dict", "job_event_log_fpath")}
        self.wms.spec.validate_fields("TaskforceObject", fields)
        moved = await self.wms.lifecycle.move(
            taskforce_uuid,
            Phase.CONDOR_SUBMIT,
            source_entity=SOURCE,
            context=f"submitted cluster {fields['cluster_id']} with {fields['n_workers']} jobs",
            extra=fields,
        )
        if moved is None:
            late = await self.wms.store.taskforces.find_one_and_update(
                {"taskforce_uuid": taskforce_uuid, "phase": str(Phase.PENDING_STOPPER), "cluster_id": None},
                {
                    "$set": fields,
                    **append_log(
                        log_entry(
                            Phase.CONDOR_SUBMIT,
                            False,
                            SOURCE,
                            f"cluster {fields['cluster_id']} submitted after deactivation; it will be removed",
                        )
                    ),
                },
            )
            if late is not None:
                LOGGER.warning("taskforce %s: late submit recorded for removal", taskforce_uuid)
            else:
                doc = await _current(self, taskforce_uuid)
                if doc["cluster_id"] != fields["cluster_id"]:
                    raise Problem(409, f"taskforce {taskforce_uuid} is in phase {doc['phase']}, not pending-starter")
        self.send({"taskforce_uuid": taskforce_uuid})


class _FailedHandler(BaseHandler):
    """Record a failed TMS action (phase unchanged, attempt counted)."""

    ROLES = {"POST": TMS}
    TARGET: Phase
    FROM: Phase
    COUNTER: str

    async def post(self, taskforce_uuid: str) -> None:
        """Log the error in the phase change log."""
        logged = await self.wms.lifecycle.record_failure(
            {"taskforce_uuid": taskforce_uuid, "phase": str(self.FROM)},
            self.TARGET,
            source_entity=SOURCE,
            context=self.body["error"],
            counter=self.COUNTER,
        )
        if not logged:
            doc = await _current(self, taskforce_uuid)
            raise Problem(409, f"taskforce {taskforce_uuid} is in phase {doc['phase']}, not {self.FROM}")
        self.send({"taskforce_uuid": taskforce_uuid})


class CondorSubmitFailedHandler(_FailedHandler):
    """``POST /v0/tms/condor-submit/taskforces/{taskforce_uuid}/failed``."""

    ROUTE = "/tms/condor-submit/taskforces/{taskforce_uuid}/failed"
    TARGET, FROM, COUNTER = Phase.CONDOR_SUBMIT, Phase.PENDING_STARTER, SUBMIT_FAILURES


class CondorRmFailedHandler(_FailedHandler):
    """``POST /v0/tms/condor-rm/taskforces/{taskforce_uuid}/failed``."""

    ROUTE = "/tms/condor-rm/taskforces/{taskforce_uuid}/failed"
    TARGET, FROM, COUNTER = Phase.CONDOR_RM, Phase.PENDING_STOPPER, RM_FAILURES


class PendingStopperHandler(BaseHandler):
    """``GET /v0/tms/pending-stopper/taskforces?schedd=``: the next taskforce whose jobs must be removed."""

    ROUTE = "/tms/pending-stopper/taskforces"
    ROLES = {"GET": TMS}

    async def get(self) -> None:
        """Oldest first; only taskforces with a submitted cluster (those without one are ended by the daemons,
        ``wms.daemons.stuck_taskforces``); ``{}`` when there is none."""
        store = self.wms.store
        found = await (
            store.taskforces.find(
                store.exact(
                    store.taskforces,
                    {
                        "schedd": self.get_query_argument("schedd"),
                        "phase": str(Phase.PENDING_STOPPER),
                        "cluster_id": {"$ne": None},
                        RM_FAILURES: {"$lte": self.wms.config.tms_action_retries},
                    },
                ),
                {"_id": False},
            )
            .sort([("timestamp", 1)])
            .limit(1)
            .to_list(1)
        )
        self.send(public(found[0]) if found else {})


class _MoveHandler(BaseHandler):
    """Confirm a TMS action by a phase move; repeating it once it took effect is fine."""

    ROLES = {"POST": TMS}
    TARGET: Phase

    async def _confirm(self, taskforce_uuid: str, context: str, source_event_time: float | None = None) -> None:
        moved = await self.wms.lifecycle.move(
            taskforce_uuid, self.TARGET, source_entity=SOURCE, context=context, source_event_time=source_event_time
        )
        if moved is None:
            doc = await _current(self, taskforce_uuid)
            if doc["phase"] != str(self.TARGET):
                raise Problem(409, f"taskforce {taskforce_uuid} in phase {doc['phase']} cannot move to {self.TARGET}")
        self.send({"taskforce_uuid": taskforce_uuid})


class CondorRmHandler(_MoveHandler):
    """``POST /v0/tms/condor-rm/taskforces/{taskforce_uuid}``."""

    ROUTE = "/tms/condor-rm/taskforces/{taskforce_uuid}"
    TARGET = Phase.CONDOR_RM

    async def post(self, taskforce_uuid: str) -> None:
        """The jobs were removed."""
        await self._confirm(taskforce_uuid, "jobs removed")


class CondorCompleteHandler(_MoveHandler):
    """``POST /v0/tms/condor-complete/taskforces/{taskforce_uuid}``."""

    ROUTE = "/tms/condor-complete/taskforces/{taskforce_uuid}"
    TARGET = Phase.CONDOR_COMPLETE

    async def post(self, taskforce_uuid: str) -> None:
        """The cluster has left the queue."""
        ts = float(self.body["condor_complete_ts"])
        await self._confirm(taskforce_uuid, "cluster completed", source_event_time=ts)


class StatusesHandler(BaseHandler):
    """``POST /v0/tms/statuses/taskforces``: bulk compound statuses, top task errors and event counters."""

    ROUTE = "/tms/statuses/taskforces"
    ROLES = {"POST": TMS}

    async def post(self) -> None:
        """Set the reported fields, one write per taskforce (re-sent values are harmless); 207 lists unknown uuids.

        Event counters are stored with a rate sample in the same write (``wms.progress.counters_update``).
        """
        errors = self.body.get("top_task_errors_by_taskforce", {})
        statuses = self.body.get("compound_statuses_by_taskforce", {})
        counters = self.body.get("event_counters_by_taskforce", {})
        updates: dict[str, dict[str, Any]] = {}
        for uuid, value in errors.items():
            updates.setdefault(uuid, {})["top_task_errors"] = value
        for uuid, value in statuses.items():
            updates.setdefault(uuid, {})["compound_statuses"] = value
        for uuid in counters:
            updates.setdefault(uuid, {})
        coll = self.wms.store.taskforces
        samples = {
            d["taskforce_uuid"]: d.get(RATE_TS) or []
            async for d in coll.find(
                {"taskforce_uuid": {"$in": list(updates)}}, {"_id": False, "taskforce_uuid": True, RATE_TS: True}
            )
        }
        now = time.time()
        writes = []
        for uuid, fields in updates.items():
            if uuid not in samples:
                continue
            update = counters_update(counters[uuid], samples[uuid], now) if uuid in counters else {"$set": {}}
            update["$set"].update(fields)
            writes.append(UpdateOne({"taskforce_uuid": uuid}, update))
        if writes:
            await coll.bulk_write(writes, ordered=False)
        results = [
            {"uuid": u, "status": "updated"}
            if u in samples
            else {"uuid": u, "status": "failed", "error": "no taskforce found with uuid"}
            for u in updates
        ]
        self.send({"results": results}, status=200 if len(samples) == len(updates) else 207)


class TaskforceLogsReportHandler(BaseHandler):
    """``POST /v0/tms/logs/taskforces/{taskforce_uuid}``: store job output tails (one per job id)."""

    ROUTE = "/tms/logs/taskforces/{taskforce_uuid}"
    ROLES = {"POST": TMS}

    async def post(self, taskforce_uuid: str) -> None:
        """Upsert each job's log; a repeated report replaces the same documents. A running job's tail never replaces
        the record of its end (a late tail finds no record to update and its insert hits the unique index)."""
        await _current(self, taskforce_uuid)
        try:
            await self.wms.store.task_logs.bulk_write(
                [
                    UpdateOne(
                        {"taskforce_uuid": taskforce_uuid, "job_id": job["job_id"]}
                        | ({"ended_ts": None} if job["ended_ts"] is None else {}),
                        {"$set": {**job, "taskforce_uuid": taskforce_uuid}},
                        upsert=True,
                    )
                    for job in self.body["jobs"]
                ],
                ordered=False,
            )
        except BulkWriteError as exc:
            if any(error.get("code") != DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
                raise
            LOGGER.debug("taskforce %s: tails of ended jobs kept over late running ones", taskforce_uuid)
        LOGGER.info("taskforce %s: logs of %d jobs stored", taskforce_uuid, len(self.body["jobs"]))
        self.send({"taskforce_uuid": taskforce_uuid})
