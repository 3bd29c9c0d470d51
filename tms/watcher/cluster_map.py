"""Which taskforce each cluster in a job event log belongs to, learned from the WMS.

A log may hold clusters the WMS does not know (yet, or ever: other users' jobs share the log dir). An unknown
cluster is looked up again with growing pauses (one query per log covers all of them), never on every pass; after
``give_up_after`` seconds it is declared foreign and its events are ignored from then on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ewms_client import WMSError
from tms.wms_client import WMSClient

LOGGER = logging.getLogger(__name__)

FIRST_RETRY = 0.5
MAX_RETRY = 30.0


@dataclass(frozen=True)
class TaskforceRef:
    """What the watcher needs to know about a cluster's taskforce."""

    uuid: str
    n_workers: int | None = None
    phase: str | None = None


@dataclass
class _Unknown:
    first_seen: float
    next_check: float
    attempts: int = 0


class ClusterMap:
    """cluster id -> taskforce, for one log."""

    def __init__(
        self,
        wms: WMSClient,
        schedd: str,
        log_path: Path,
        give_up_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wms = wms
        self._schedd = schedd
        self._log_path = str(log_path)
        self._give_up_after = give_up_after
        self._clock = clock
        self.known: dict[int, TaskforceRef] = {}
        self.foreign: set[int] = set()
        self._unknown: dict[int, _Unknown] = {}

    def register(self, cluster_id: int, ref: TaskforceRef) -> None:
        """Record a mapping learned elsewhere (the starter knows its clusters at once)."""
        self.known[cluster_id] = ref
        self._unknown.pop(cluster_id, None)
        self.foreign.discard(cluster_id)

    def note_unknown(self, cluster_id: int) -> None:
        """A cluster appeared in the log that is not mapped yet: look it up on the next :meth:`refresh`."""
        if cluster_id not in self.known and cluster_id not in self.foreign and cluster_id not in self._unknown:
            now = self._clock()
            self._unknown[cluster_id] = _Unknown(first_seen=now, next_check=now)

    @property
    def has_unknown(self) -> bool:
        """Clusters wait for a lookup."""
        return bool(self._unknown)

    def due(self) -> bool:
        """Whether a lookup is due now."""
        now = self._clock()
        return any(u.next_check <= now for u in self._unknown.values())

    async def refresh(self, force: bool = False) -> set[int]:
        """Ask the WMS about this log's taskforces if a lookup is due (or ``force``); returns newly foreign clusters."""
        if not force and not self.due():
            return set()
        try:
            found = await self._wms.query_taskforces(
                {"schedd": self._schedd, "job_event_log_fpath": self._log_path},
                ["taskforce_uuid", "cluster_id", "n_workers", "phase"],
            )
        except WMSError as exc:
            LOGGER.warning("cannot look up the taskforces of %s: %s", self._log_path, exc)
            found = None
        if found is not None:
            for tf in found:
                if tf.get("cluster_id") is not None:
                    self.register(
                        int(tf["cluster_id"]), TaskforceRef(tf["taskforce_uuid"], tf.get("n_workers"), tf.get("phase"))
                    )
        return self._schedule_retries()

    def _schedule_retries(self) -> set[int]:
        now = self._clock()
        given_up: set[int] = set()
        for cluster_id, unknown in list(self._unknown.items()):
            if unknown.next_check > now:
                continue
            if now - unknown.first_seen >= self._give_up_after:
                given_up.add(cluster_id)
                del self._unknown[cluster_id]
                continue
            unknown.attempts += 1
            unknown.next_check = now + min(FIRST_RETRY * 2 ** (unknown.attempts - 1), MAX_RETRY)
        if given_up:
            self.foreign |= given_up
            LOGGER.info(
                "%s: ignoring clusters %s, which no taskforce of schedd %s claims",
                self._log_path,
                sorted(given_up),
                self._schedd,
            )
        return given_up
