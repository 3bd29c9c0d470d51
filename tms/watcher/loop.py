"""The watcher: follows every job event log in the log dir and streams per-taskforce statuses to the WMS.

Each pass (every ``watcher_interval`` seconds, at once while a backlog remains): find logs, read what is new,
look up clusters not mapped yet, send one bulk status report with only the changes, ship the output tails of jobs
that ended (:mod:`tms.watcher.job_logs`), then report clusters that left the queue (``condor-complete``). A log
read from the top (first sight, restart) reports only once it caught up, so the WMS never sees the intermediate
states of old events; a flooded log in steady state reports on every pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ewms_client import WMSError
from ewms_wire.chirp import ATTR_PREFIX
from ewms_wire.job_event_log import EventType
from tms import metrics
from tms.backends.base import JEL_SUFFIX
from tms.config import TMSConfig
from tms.daemon import poll_loop
from tms.watcher.aggregate import Snapshot, StatusTracker, compound_statuses, event_counters, top_task_errors
from tms.watcher.cluster_map import ClusterMap, TaskforceRef
from tms.watcher.job_logs import JobLogShipper
from tms.watcher.job_state import ENDED, RUNNING, ClusterState, JobState
from tms.watcher.log_reader import LogGone, LogReader
from tms.wms_client import WMSClient

LOGGER = logging.getLogger(__name__)

CHUNK_EVENTS = 5000
TARGET_CACHE_MAX = 200_000
PASS_READ_BUDGET = 0.5  # seconds of parsing per pass before reporting what was read so far
GENERIC = EventType.GENERIC  # the event type that carries pilot chirps


# what an event header ("008 (101.000.000") leads to: (event type, proc, cluster state, job state); no state: ignored
Target = tuple[int, int, ClusterState | None, JobState | None]


class WatchedLog:
    """One log: its reader, the states of its clusters, and their taskforces."""

    def __init__(self, path: Path, cluster_map: ClusterMap) -> None:
        self.path = path
        self.reader = LogReader(path)
        self.map = cluster_map
        self.clusters: dict[int, ClusterState] = {}
        self.caught_up_once = False
        self.n_events = 0
        self._targets: dict[str, Target] = {}

    def consume(self, limit: int) -> int:
        """Apply up to ``limit`` new events; returns how many were read. Raises LogGone.

        The hot path reads the event's text (``"008 (101.000.000) 2026-03-02 10:01:10 <info>"``, which ``htcondor2``
        renders in one fixed format) instead of looking up ClassAd attributes, which costs several times more, and
        finds the job's state through a cache keyed by the header; only the rarer non-generic events consult the
        ClassAd.
        """
        targets = self._targets
        n = 0
        for event in self.reader.read(limit):
            n += 1
            text = str(event)
            close = text.find(") ", 5)
            target = targets.get(text[:close])
            if target is None:
                target = self._target(text, close, event)
            event_type, proc, state, job = target
            if state is None:
                continue
            if job is not None:  # a generic event
                start = close + 22  # after ") YYYY-MM-DD HH:MM:SS "
                if not text.startswith(ATTR_PREFIX, start):
                    start = text.find(ATTR_PREFIX, close)
                    if start < 0:
                        continue
                if job.chirp(text[start:-1] if text[-1] == "\n" else text[start:]):
                    state.dirty = True
            else:
                state.update(proc, event_type, event, text[close + 2 : close + 21])
        self.n_events += n
        if self.reader.exhausted and not self.reader.waiting_for_tail:
            self.caught_up_once = True
        return n

    def _target(self, text: str, close: int, event: Mapping[str, Any]) -> Target:
        """Resolve a header not seen before (cached), or an unusual one from the ClassAd (not cached)."""
        try:
            if text[3:5] != " (":
                raise ValueError(text[:20])
            cluster_text, proc_text, _ = text[5:close].split(".")
            cluster_id, proc, event_type = int(cluster_text), int(proc_text), int(text[:3])
            cacheable = True
        except ValueError:
            cluster_id, proc = int(event["Cluster"]), int(event.get("Proc", -1))
            event_type, cacheable = int(event["EventTypeNumber"]), False
        if cluster_id in self.map.foreign:
            target: Target = (event_type, proc, None, None)
        else:
            state = self.clusters.get(cluster_id)
            if state is None:
                state = self.clusters[cluster_id] = ClusterState(cluster_id)
                if cluster_id not in self.map.known:
                    self.map.note_unknown(cluster_id)
            target = (event_type, proc, state, state.job(proc) if event_type == GENERIC and proc >= 0 else None)
        if cacheable:
            if len(self._targets) >= TARGET_CACHE_MAX:
                self._targets.clear()
            self._targets[text[:close]] = target
        return target

    def drop_foreign(self, cluster_ids: Iterable[int]) -> None:
        """Forget clusters no taskforce claims."""
        for cluster_id in cluster_ids:
            self.clusters.pop(cluster_id, None)
        self._targets.clear()

    def register(self, cluster_id: int, ref: TaskforceRef) -> None:
        """Map a cluster to its taskforce (it may have been ignored as foreign so far)."""
        self.map.register(cluster_id, ref)
        self._targets.clear()


class Watcher:
    """Watches all ``*.tms.jel`` logs in the job event log dir."""

    def __init__(self, config: TMSConfig, wms: WMSClient) -> None:
        self.config = config
        self.wms = wms
        self.logs: dict[Path, WatchedLog] = {}
        self.tracker = StatusTracker()
        self.job_logs = JobLogShipper(config, wms)
        self.completed: set[tuple[Path, int]] = set()
        self._maybe_complete: set[tuple[Path, int]] = set()
        self._reported: set[str] = set()
        self._unsent: dict[str, Snapshot] = {}  # snapshots the WMS did not take yet
        self._registered: dict[Path, dict[int, TaskforceRef]] = {}

    def register_cluster(self, log_path: Path, cluster_id: int, ref: TaskforceRef) -> None:
        """The starter submitted ``cluster_id`` for a taskforce: map it without asking the WMS."""
        watched = self.logs.get(log_path)
        if watched is not None:
            watched.register(cluster_id, ref)
        else:
            self._registered.setdefault(log_path, {})[cluster_id] = ref

    async def run(self, stop: asyncio.Event) -> None:
        """Pass after pass until ``stop`` is set (at once while a backlog remains); errors are logged and retried."""
        LOGGER.info(
            "watcher: following %s/*%s every %.2fs",
            self.config.job_event_log_dir,
            JEL_SUFFIX,
            self.config.watcher_interval,
        )
        try:
            await poll_loop("watcher", self.run_once, stop, self.config.watcher_interval, self.config.error_wait)
        finally:
            for watched in self.logs.values():
                watched.reader.close()

    async def run_once(self) -> bool:
        """One pass; returns True when unread events remain."""
        await self._discover()
        backlog = await self._read_all()
        for watched in list(self.logs.values()):
            if watched.map.has_unknown and watched.map.due():
                watched.drop_foreign(await watched.map.refresh())
        self._collect_ended()
        if await self._report_statuses():
            await self._ship_job_logs()
            await self._report_completions()
        return backlog

    async def _discover(self) -> None:
        try:
            entries = list(os.scandir(self.config.job_event_log_dir))
        except FileNotFoundError:
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.name.endswith(JEL_SUFFIX) and path not in self.logs and entry.is_file():
                await self._watch(path)

    async def _watch(self, path: Path) -> None:
        cluster_map = ClusterMap(self.wms, self.config.schedd, path, self.config.unmapped_cluster_give_up)
        for cluster_id, ref in self._registered.pop(path, {}).items():
            cluster_map.register(cluster_id, ref)
        await cluster_map.refresh(force=True)
        self.logs[path] = WatchedLog(path, cluster_map)
        LOGGER.info("watcher: following %s (%d taskforces known)", path, len(cluster_map.known))

    async def _read_all(self) -> bool:
        """Read new events, one chunk per log in turn (a flooded log does not starve the others) until caught up
        or out of this pass's time budget; True when unread events remain."""
        deadline = time.monotonic() + PASS_READ_BUDGET
        pending = list(self.logs.values())
        while pending:
            unfinished = []
            for watched in pending:
                try:
                    if not watched.reader.has_news():
                        continue
                    metrics.EVENTS_READ.inc(watched.consume(CHUNK_EVENTS))
                except LogGone:
                    LOGGER.info("watcher: %s is gone (archived or deleted); no longer following it", watched.path)
                    watched.reader.close()
                    self.job_logs.forget(watched.clusters)
                    del self.logs[watched.path]
                    continue
                if not watched.reader.exhausted:
                    unfinished.append(watched)
                await asyncio.sleep(0)
            pending = unfinished
            if pending and time.monotonic() > deadline:
                break
        metrics.CORRUPT_EVENTS.set(sum(w.reader.n_corrupt for w in self.logs.values()))
        return bool(pending)

    def _snapshots(self) -> dict[str, Snapshot]:
        """Fresh summaries of every taskforce with a changed cluster in a caught-up log; those clusters also become
        candidates for the completion check."""
        by_uuid: dict[str, list[ClusterState]] = {}
        dirty: set[str] = set()
        for watched in self.logs.values():
            if not watched.caught_up_once:
                continue
            for cluster_id, state in watched.clusters.items():
                ref = watched.map.known.get(cluster_id)
                if ref is None:
                    continue
                by_uuid.setdefault(ref.uuid, []).append(state)
                if state.dirty:
                    dirty.add(ref.uuid)
                    self._maybe_complete.add((watched.path, cluster_id))
        out = {}
        for uuid in dirty:
            jobs = [job for state in by_uuid[uuid] for job in state.jobs.values()]
            out[uuid] = (
                compound_statuses(jobs),
                top_task_errors(jobs, self.config.n_top_task_errors),
                event_counters(jobs),
            )
        return out

    def _clear_dirty(self) -> None:
        for watched in self.logs.values():
            if watched.caught_up_once:
                for cluster_id, state in watched.clusters.items():
                    if cluster_id in watched.map.known:
                        state.dirty = False

    async def _report_statuses(self) -> bool:
        """Send what changed, in reports under ``status_report_max_bytes`` (a 413 splits a report further); what the
        WMS did not accept is kept and sent again next pass. False when the WMS is away (nothing more is sent)."""
        snapshots = {**self._unsent, **self._snapshots()}
        self._clear_dirty()
        changes = self.tracker.changes(snapshots)
        self._unsent = {}
        pending = changes.chunks(self.config.status_report_max_bytes)
        while pending:
            chunk = pending.pop(0)
            try:
                results = await self.wms.send_statuses(
                    chunk.compound_statuses, chunk.top_task_errors, chunk.event_counters
                )
            except WMSError as exc:
                if exc.status == 413 and len(chunk.taskforces) > 1:
                    pending[:0] = chunk.chunks(len(json.dumps(asdict(chunk))) // 2)
                    LOGGER.warning("watcher: WMS refused a status report as too large; splitting it: %s", exc)
                    continue
                kept = [chunk, *pending] if exc.is_unavailable else [chunk]  # the WMS is away: the rest waits too
                self._unsent.update({uuid: snapshots[uuid] for part in kept for uuid in part.taskforces})
                LOGGER.warning(
                    "watcher: status report for %d taskforces not accepted (sent again next pass): %s",
                    sum(len(part.taskforces) for part in kept),
                    exc,
                )
                metrics.STATUS_REPORTS.labels("failed" if exc.is_unavailable else "refused").inc()
                if exc.is_unavailable:
                    return False
                continue
            for result in results:
                if result.get("status") == "failed":
                    LOGGER.warning(
                        "watcher: WMS did not take the status of %s: %s", result.get("uuid"), result.get("error")
                    )
            for uuid in sorted(chunk.taskforces - self._reported):
                LOGGER.info("watcher: first statuses of %s: %s", uuid, chunk.compound_statuses.get(uuid))
            self._reported |= chunk.taskforces
            LOGGER.debug("watcher: reported %s", chunk)
            self.tracker.mark_sent(chunk)
            metrics.STATUS_REPORTS.labels("sent").inc()
        return True

    def _collect_ended(self) -> None:
        """Hand the jobs that ended (and still are ended) in mapped clusters of caught-up logs to the log shipper, and
        when due, the running ones."""
        for watched in self.logs.values():
            if not watched.caught_up_once:
                continue
            for cluster_id, state in watched.clusters.items():
                if not state.ended:
                    continue
                ref = watched.map.known.get(cluster_id)
                if ref is None:
                    continue
                for proc, stamp in state.ended.items():
                    job = state.jobs[proc]
                    if job.condor_status in ENDED:
                        self.job_logs.job_ended(ref.uuid, cluster_id, proc, job, stamp)
                state.ended.clear()
        if self.job_logs.running_due():
            self.job_logs.jobs_running(self._running_jobs())

    def _running_jobs(self) -> Iterable[tuple[str, int, int, JobState]]:
        """Every running job of a mapped cluster in a caught-up log, with its taskforce uuid."""
        for watched in self.logs.values():
            if not watched.caught_up_once:
                continue
            for cluster_id, state in watched.clusters.items():
                ref = watched.map.known.get(cluster_id)
                if ref is not None:
                    for proc, job in state.jobs.items():
                        if job.condor_status == RUNNING:
                            yield ref.uuid, cluster_id, proc, job

    async def _ship_job_logs(self) -> None:
        """Ship jobs' output tails; a failure here never holds up the status and completion reports."""
        try:
            await self.job_logs.ship()
        except Exception:
            LOGGER.exception("watcher: shipping job logs failed (retrying next pass)")

    async def _report_completions(self) -> None:
        """Report ``condor-complete`` for changed clusters that left the queue (retried while the WMS is away)."""
        for key in sorted(self._maybe_complete):
            path, cluster_id = key
            watched = self.logs.get(path)
            state = watched.clusters.get(cluster_id) if watched is not None else None
            ref = watched.map.known.get(cluster_id) if watched is not None else None
            if state is None or ref is None or not state.is_complete(ref.n_workers):
                self._maybe_complete.discard(key)
                continue
            if ref.phase != "condor-complete":  # (already recorded, e.g. seen again after a restart)
                try:
                    await self.wms.confirm_condor_complete(ref.uuid, state.finished_ts or int(time.time()))
                except WMSError as exc:
                    if exc.is_unavailable:
                        LOGGER.warning(
                            "watcher: condor-complete of %s (cluster %d) failed, retrying: %s",
                            ref.uuid,
                            cluster_id,
                            exc,
                        )
                        continue
                    LOGGER.warning(
                        "watcher: WMS refused condor-complete of %s (cluster %d): %s", ref.uuid, cluster_id, exc.detail
                    )
                else:
                    how = "was removed" if state.removed else "has no jobs left in the queue"
                    LOGGER.info(
                        "watcher: cluster %d of %s %s: reported condor-complete (final statuses %s)",
                        cluster_id,
                        ref.uuid,
                        how,
                        self.tracker.last_compound(ref.uuid),
                    )
            self._maybe_complete.discard(key)
            self.completed.add(key)
