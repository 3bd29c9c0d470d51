"""The real scheduler: the local schedd through the ``htcondor2`` bindings."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Protocol

import classad2
import htcondor2

from tms.backends.base import Backend, BackendError, FoundCluster, JobSpec, Submitted

LOGGER = logging.getLogger(__name__)

FIND_PROJECTION = ("ClusterId", "ProcId", "UserLog")


class ScheddLike(Protocol):
    """The four ``htcondor2.Schedd`` methods this backend calls."""

    def submit(self, description: htcondor2.Submit, count: int = 0) -> Any: ...

    def query(self, constraint: str = "True", projection: list[str] = ...) -> Any: ...

    def history(self, constraint: str | None = None, projection: list[str] = ..., match: int = -1) -> Any: ...

    def act(self, action: htcondor2.JobAction, job_spec: str, reason: str | None = None) -> Any: ...


class HTCondorBackend(Backend):
    """Submits and removes jobs on a schedd (the local one unless ``schedd`` is given)."""

    name = "htcondor"

    def __init__(self, job_event_log_dir: Path, schedd: ScheddLike | None = None) -> None:
        super().__init__(job_event_log_dir)
        self._schedd = schedd

    def schedd(self) -> ScheddLike:
        """The schedd (located on first use); raises BackendError when there is none."""
        if self._schedd is None:
            try:
                self._schedd = htcondor2.Schedd()
            except htcondor2.HTCondorException as exc:
                raise BackendError(f"cannot locate the schedd: {exc}") from exc
        return self._schedd

    async def submit(self, spec: JobSpec, count: int) -> Submitted:
        """``schedd.submit(Submit(spec.submit_dict), count=count)``."""
        description = htcondor2.Submit(spec.submit_dict)
        schedd = self.schedd()
        try:
            result = await asyncio.to_thread(schedd.submit, description, count=count)
        except (htcondor2.HTCondorException, RuntimeError, ValueError) as exc:
            raise BackendError(f"condor submit failed: {type(exc).__name__}: {exc}") from exc
        submitted = Submitted(cluster_id=int(result.cluster()), n_jobs=int(result.num_procs()))
        LOGGER.info(
            "submitted %d jobs as cluster %d for %s", submitted.n_jobs, submitted.cluster_id, spec.taskforce_uuid
        )
        return submitted

    async def find_cluster(self, taskforce_uuid: str) -> FoundCluster | None:
        """The first cluster with jobs of the taskforce in the schedd's queue (``schedd.query``) or already gone from it
        (``schedd.history``: completed or removed while no TMS was watching), both with the constraint
        ``EWMSTaskforceUUID == "<uuid>"`` and the projection ``ClusterId, ProcId, UserLog``."""
        schedd = self.schedd()
        constraint = f"EWMSTaskforceUUID == {classad2.quote(taskforce_uuid)}"
        try:
            queued = await asyncio.to_thread(schedd.query, constraint=constraint, projection=list(FIND_PROJECTION))
            left = await asyncio.to_thread(
                schedd.history, constraint=constraint, projection=list(FIND_PROJECTION), match=-1
            )
        except (htcondor2.HTCondorException, RuntimeError, ValueError) as exc:
            raise BackendError(f"condor_q of taskforce {taskforce_uuid} failed: {type(exc).__name__}: {exc}") from exc
        ads = [*queued, *left]
        if not ads:
            return None
        cluster_id = min(int(ad["ClusterId"]) for ad in ads)
        jobs = [ad for ad in ads if int(ad["ClusterId"]) == cluster_id]
        log = next((str(ad["UserLog"]) for ad in jobs if ad.get("UserLog")), None)
        return FoundCluster(
            cluster_id=cluster_id,
            n_jobs=max(int(ad["ProcId"]) for ad in jobs) + 1,  # procs are numbered from 0
            job_event_log=Path(log) if log else self.job_event_log_path(),
        )

    async def remove(self, cluster_id: int, reason: str) -> int:
        """``schedd.act(JobAction.Remove, "ClusterId == N", reason)`` (condor_rm)."""
        schedd = self.schedd()
        try:
            ad = await asyncio.to_thread(
                schedd.act, htcondor2.JobAction.Remove, f"ClusterId == {int(cluster_id)}", reason=reason
            )
        except (htcondor2.HTCondorException, RuntimeError, ValueError) as exc:
            raise BackendError(f"condor_rm of cluster {cluster_id} failed: {type(exc).__name__}: {exc}") from exc
        removed = int(_ad_value(ad, "TotalSuccess", 0))
        LOGGER.info("removed %d jobs of cluster %d (%s)", removed, cluster_id, reason)
        return removed


def _ad_value(ad: Any, key: str, default: int) -> Any:
    try:
        return ad.get(key, default)
    except AttributeError:
        return default
