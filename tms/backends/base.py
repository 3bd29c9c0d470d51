"""The narrow interface every scheduler backend offers: submit, find, remove, and where job event logs go."""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from pathlib import Path

JEL_SUFFIX = ".tms.jel"


class BackendError(Exception):
    """The scheduler refused or failed an action; the message is reported to the WMS."""


@dataclass(frozen=True)
class JobSpec:
    """What to run for one taskforce.

    ``submit_dict`` is the HTCondor submit description (the ``htcondor`` backend submits it as is; the ``local``
    backend reads ``log``, ``output``, ``error``, ``request_memory`` and ``allowed_execute_duration`` from it).
    ``pilot_env`` is the pilot's environment (HTCondor jobs get it through the env file in ``taskforce_dir``).
    """

    taskforce_uuid: str
    submit_dict: dict[str, str]
    pilot_env: dict[str, str]
    taskforce_dir: Path

    @property
    def job_event_log(self) -> Path:
        """The job event log the jobs write to."""
        return Path(self.submit_dict["log"])


@dataclass(frozen=True)
class Submitted:
    """Outcome of a submission."""

    cluster_id: int
    n_jobs: int


@dataclass(frozen=True)
class FoundCluster:
    """A cluster submitted earlier for a taskforce (e.g. by a TMS that crashed before confirming it)."""

    cluster_id: int
    n_jobs: int
    job_event_log: Path


class Backend(abc.ABC):
    """A scheduler the TMS submits pilot jobs to."""

    name = "abstract"

    def __init__(self, job_event_log_dir: Path) -> None:
        self.job_event_log_dir = job_event_log_dir

    def job_event_log_path(self, now: float | None = None) -> Path:
        """Today's shared job event log (one file per day, as upstream)."""
        day = time.strftime("%Y-%m-%d", time.localtime(time.time() if now is None else now))
        return self.job_event_log_dir / f"{day}{JEL_SUFFIX}"

    @abc.abstractmethod
    async def submit(self, spec: JobSpec, count: int) -> Submitted:
        """Queue ``count`` jobs in one new cluster; raises BackendError."""

    @abc.abstractmethod
    async def find_cluster(self, taskforce_uuid: str) -> FoundCluster | None:
        """The cluster already submitted for this taskforce (its jobs carry ``EWMSTaskforceUUID``), if any;
        raises BackendError when the scheduler cannot tell."""

    @abc.abstractmethod
    async def remove(self, cluster_id: int, reason: str) -> int:
        """Remove every job of the cluster still queued, running or held; returns how many; raises BackendError."""

    async def close(self) -> None:
        """Release resources (the local backend stops its jobs)."""
        return None
