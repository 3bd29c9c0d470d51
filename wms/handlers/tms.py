"""Routes the TMS calls: fetch work for its schedd, confirm submits/removals/completions, report statuses and job
logs. Each parses the request and calls one operation (``wms.operations.tms_actions``, which holds the invariants: a
TMS may retry any call safely)."""

from __future__ import annotations

from wms.handlers.base import TMS, BaseHandler
from wms.lifecycle import Phase


class PendingStarterHandler(BaseHandler):
    """``GET /v0/tms/pending-starter/taskforces?schedd=``: the next taskforce to submit, with what it needs."""

    ROUTE = "/tms/pending-starter/taskforces"
    ROLES = {"GET": TMS}

    async def get(self) -> None:
        """The taskforce, task directive, queue profiles and pilot credential; ``{}`` when there is none."""
        self.send(await self.wms.operations.tms.next_to_start(self.get_query_argument("schedd")) or {})


class CondorSubmitHandler(BaseHandler):
    """``POST /v0/tms/condor-submit/taskforces/{taskforce_uuid}``."""

    ROUTE = "/tms/condor-submit/taskforces/{taskforce_uuid}"
    ROLES = {"POST": TMS}

    async def post(self, taskforce_uuid: str) -> None:
        """Record the submitted cluster and move to ``condor-submit``; a cluster submitted after deactivation is
        recorded for removal, within ``UNSUBMITTED_STOP_GRACE_SECONDS`` (else 409: the TMS removes it itself)."""
        fields = {k: self.body[k] for k in ("cluster_id", "n_workers", "submit_dict", "job_event_log_fpath")}
        self.wms.spec.validate_fields("TaskforceObject", fields)
        await self.wms.operations.tms.submitted(taskforce_uuid, fields)
        self.send({"taskforce_uuid": taskforce_uuid})


class _FailedHandler(BaseHandler):
    """Record a failed TMS action (phase unchanged, attempt counted)."""

    ROLES = {"POST": TMS}
    TARGET: Phase

    async def post(self, taskforce_uuid: str) -> None:
        """Log the error in the phase change log."""
        await self.wms.operations.tms.action_failed(taskforce_uuid, self.TARGET, self.body["error"])
        self.send({"taskforce_uuid": taskforce_uuid})


class CondorSubmitFailedHandler(_FailedHandler):
    """``POST /v0/tms/condor-submit/taskforces/{taskforce_uuid}/failed``."""

    ROUTE = "/tms/condor-submit/taskforces/{taskforce_uuid}/failed"
    TARGET = Phase.CONDOR_SUBMIT


class CondorRmFailedHandler(_FailedHandler):
    """``POST /v0/tms/condor-rm/taskforces/{taskforce_uuid}/failed``."""

    ROUTE = "/tms/condor-rm/taskforces/{taskforce_uuid}/failed"
    TARGET = Phase.CONDOR_RM


class PendingStopperHandler(BaseHandler):
    """``GET /v0/tms/pending-stopper/taskforces?schedd=``: the next taskforce whose jobs must be removed."""

    ROUTE = "/tms/pending-stopper/taskforces"
    ROLES = {"GET": TMS}

    async def get(self) -> None:
        """Oldest first; ``{}`` when there is none."""
        self.send(await self.wms.operations.tms.next_to_stop(self.get_query_argument("schedd")) or {})


class CondorRmHandler(BaseHandler):
    """``POST /v0/tms/condor-rm/taskforces/{taskforce_uuid}``."""

    ROUTE = "/tms/condor-rm/taskforces/{taskforce_uuid}"
    ROLES = {"POST": TMS}

    async def post(self, taskforce_uuid: str) -> None:
        """The jobs were removed."""
        await self.wms.operations.tms.confirm(taskforce_uuid, Phase.CONDOR_RM, "jobs removed")
        self.send({"taskforce_uuid": taskforce_uuid})


class CondorCompleteHandler(BaseHandler):
    """``POST /v0/tms/condor-complete/taskforces/{taskforce_uuid}``."""

    ROUTE = "/tms/condor-complete/taskforces/{taskforce_uuid}"
    ROLES = {"POST": TMS}

    async def post(self, taskforce_uuid: str) -> None:
        """The cluster has left the queue."""
        ts = float(self.body["condor_complete_ts"])
        await self.wms.operations.tms.confirm(taskforce_uuid, Phase.CONDOR_COMPLETE, "cluster completed", ts)
        self.send({"taskforce_uuid": taskforce_uuid})


class StatusesHandler(BaseHandler):
    """``POST /v0/tms/statuses/taskforces``: bulk compound statuses, top task errors and event counters."""

    ROUTE = "/tms/statuses/taskforces"
    ROLES = {"POST": TMS}

    async def post(self) -> None:
        """Store what was reported; 207 when some uuids are unknown (each result says which)."""
        results = await self.wms.operations.tms.report_statuses(
            self.body.get("top_task_errors_by_taskforce", {}),
            self.body.get("compound_statuses_by_taskforce", {}),
            self.body.get("event_counters_by_taskforce", {}),
        )
        self.send({"results": results}, status=207 if any(r["status"] == "failed" for r in results) else 200)


class TaskforceLogsReportHandler(BaseHandler):
    """``POST /v0/tms/logs/taskforces/{taskforce_uuid}``: store job output tails (one per job id)."""

    ROUTE = "/tms/logs/taskforces/{taskforce_uuid}"
    ROLES = {"POST": TMS}

    async def post(self, taskforce_uuid: str) -> None:
        """Upsert each job's log (a running job's tail never replaces the record of its end)."""
        await self.wms.operations.tms.store_logs(taskforce_uuid, self.body["jobs"])
        self.send({"taskforce_uuid": taskforce_uuid})
