"""The starter: submits pilot jobs for this schedd's pending-starter taskforces and confirms them to the WMS.

A taskforce is submitted at most once, also across a crash between submitting and confirming: before submitting,
the starter asks the backend for a cluster already submitted for the taskforce and, if there is one, confirms
that cluster instead.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from ewms_client import WMSError
from tms import metrics
from tms.backends.base import Backend, BackendError, JobSpec
from tms.config import TMSConfig
from tms.daemon import wait_or_stop
from tms.submit_description import TaskforceSpecError, build_job_spec
from tms.watcher.cluster_map import TaskforceRef
from tms.watcher.loop import Watcher
from tms.wms_client import WMSClient

LOGGER = logging.getLogger(__name__)

PENDING_STARTER = "pending-starter"


@dataclass(frozen=True)
class Submission:
    """A cluster submitted for a taskforce, to confirm to the WMS."""

    spec: JobSpec
    cluster_id: int
    n_jobs: int


class Starter:
    """One :meth:`step` starts at most one taskforce."""

    def __init__(
        self, config: TMSConfig, wms: WMSClient, backend: Backend, watcher: Watcher | None, stop: asyncio.Event
    ) -> None:
        self.config = config
        self.wms = wms
        self.backend = backend
        self.watcher = watcher
        self.stop = stop
        # submitted but not yet confirmed (the WMS was unreachable): confirm again rather than submit twice
        self._unconfirmed: dict[str, Submission] = {}

    async def step(self) -> bool:
        """Start the next pending taskforce, if any; True when there was one."""
        pending = await self.wms.get_pending_starter(self.config.schedd)
        if not pending:
            return False
        await self.start(pending)
        return True

    async def start(self, pending: dict[str, Any]) -> None:
        """Submit one taskforce's jobs and confirm them (or report the failure and back off)."""
        uuid = str(pending["taskforce"]["taskforce_uuid"])
        submission = self._unconfirmed.get(uuid)
        if submission is None:
            current = await self.wms.get_taskforce(uuid)
            if current.get("phase") != PENDING_STARTER:
                LOGGER.info(
                    "starter: %s is now %r, not %s: not starting it", uuid, current.get("phase"), PENDING_STARTER
                )
                return
            try:
                submission = await self._find_or_submit(pending)
            except (BackendError, TaskforceSpecError, OSError) as exc:
                await self._report_failure(uuid, f"{type(exc).__name__}: {exc}")
                return
            self._unconfirmed[uuid] = submission
        await self._confirm(uuid, submission)

    async def _find_or_submit(self, pending: dict[str, Any]) -> Submission:
        """The cluster an earlier run submitted for the taskforce, else a new submission."""
        uuid = str(pending["taskforce"]["taskforce_uuid"])
        found = await self.backend.find_cluster(uuid)
        if found is not None:
            spec, _ = build_job_spec(self.config, pending, found.job_event_log)
            submission = Submission(spec, found.cluster_id, found.n_jobs)
            metrics.SUBMISSIONS.labels("recovered").inc()
            verb = "found unconfirmed"
        else:
            spec, n_workers = build_job_spec(self.config, pending, self.backend.job_event_log_path())
            result = await self.backend.submit(spec, n_workers)
            submission = Submission(spec, result.cluster_id, result.n_jobs)
            metrics.SUBMITTED_JOBS.inc(result.n_jobs)
            verb = "submitted"
        (spec.taskforce_dir / f"cluster-{submission.cluster_id}").mkdir(parents=True, exist_ok=True)
        if self.watcher is not None:
            ref = TaskforceRef(uuid, submission.n_jobs, "condor-submit")
            self.watcher.register_cluster(spec.job_event_log, submission.cluster_id, ref)
        LOGGER.info(
            "starter: %s cluster %d (%d pilot jobs) for %s (log %s)",
            verb,
            submission.cluster_id,
            submission.n_jobs,
            uuid,
            spec.job_event_log,
        )
        return submission

    async def _confirm(self, uuid: str, submission: Submission) -> None:
        try:
            await self.wms.confirm_condor_submit(
                uuid,
                submission.cluster_id,
                submission.n_jobs,
                submission.spec.submit_dict,
                str(submission.spec.job_event_log),
            )
        except WMSError as exc:
            if exc.is_unavailable:
                raise  # kept as unconfirmed: confirmed, not submitted again, when offered next
            self._unconfirmed.pop(uuid, None)
            if exc.status not in (404, 409):
                raise
            # the taskforce moved on (e.g. its workflow was aborted) while we submitted: take the jobs back
            LOGGER.warning(
                "starter: WMS refused condor-submit of %s (%s); removing cluster %d",
                uuid,
                exc.detail,
                submission.cluster_id,
            )
            await self.backend.remove(submission.cluster_id, f"taskforce {uuid} is no longer pending-starter")
            metrics.SUBMISSIONS.labels("withdrawn").inc()
            return
        self._unconfirmed.pop(uuid, None)
        metrics.SUBMISSIONS.labels("confirmed").inc()
        LOGGER.info(
            "starter: confirmed condor-submit of %s (cluster %d, %d jobs)",
            uuid,
            submission.cluster_id,
            submission.n_jobs,
        )

    async def _report_failure(self, uuid: str, error: str) -> None:
        LOGGER.error("starter: cannot start %s: %s", uuid, error)
        metrics.SUBMISSIONS.labels("failed").inc()
        try:
            await self.wms.fail_condor_submit(uuid, error[:2000])
        except WMSError as exc:  # e.g. 409: the taskforce left pending-starter meanwhile
            LOGGER.warning("starter: WMS did not record the failure of %s: %s", uuid, exc.detail)
        await wait_or_stop(self.stop, self.config.error_wait)
