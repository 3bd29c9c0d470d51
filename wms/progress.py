"""Progress and health, derived in one place from what the TMS stored on a taskforce.

Stored by the statuses route (``POST /v0/tms/statuses/taskforces``), in one write per taskforce:
- ``event_counters``: ``done``, ``failed``, ``in_flight`` as the TMS summed its pilots' task counters (see
  ``tms.watcher.aggregate.event_counters``), with ``updated_ts`` (when the WMS took them);
- a small ring of ``(time, settled)`` samples (``settled = done + failed``), one at most every
  :data:`SAMPLE_SPACING` seconds and at most :data:`SAMPLES_KEPT` of them, from which :func:`rate` is computed.

Derived when read (never stored): the settling rate over the last minute, and the health: ``ok``, ``failing`` (some
workers failed), ``failed`` (the submit was given up, or every worker failed), with a reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

from ewms_wire.chirp import PilotStatus
from wms.database.store import RETRIED_AS, SUBMIT_FAILURES, Doc, push_bounded
from wms.lifecycle import Phase

EVENT_COUNTERS = "event_counters"
RATE_TS, RATE_SETTLED = "_rate_ts", "_rate_settled"  # the sample ring, two parallel arrays of numbers
RATE_WINDOW = 60.0  # seconds: the rate is over the last minute
SAMPLE_SPACING = 5.0  # seconds between two kept samples
SAMPLES_KEPT = 16  # covers RATE_WINDOW + SAMPLE_SPACING at the spacing above

OK, FAILING, FAILED = "ok", "failing", "failed"
HELD_PREFIX = "HELD"


def counters_update(counters: Mapping[str, int], sample_times: Sequence[float], now: float) -> Doc:
    """The update storing reported counters: ``event_counters`` set, and a sample pushed on the ring when the last
    one is at least :data:`SAMPLE_SPACING` old (the latest counters themselves are always the newest point)."""
    update: Doc = {"$set": {EVENT_COUNTERS: {**counters, "updated_ts": now}}}
    if not sample_times or now - sample_times[-1] >= SAMPLE_SPACING:
        settled = int(counters["done"]) + int(counters["failed"])
        update.update(push_bounded({RATE_TS: now, RATE_SETTLED: settled}, SAMPLES_KEPT))
    return update


def counters_of(doc: Doc) -> dict[str, int]:
    """``done``, ``failed``, ``in_flight`` of a taskforce (zeros before its first report)."""
    stored = doc.get(EVENT_COUNTERS) or {}
    return {key: int(stored.get(key, 0)) for key in ("done", "failed", "in_flight")}


def rate(doc: Doc, now: float) -> float:
    """Events settled (done or failed) per second over the last minute (or since the first report, if later)."""
    times, settled = doc.get(RATE_TS) or [], doc.get(RATE_SETTLED) or []
    if not times or len(times) != len(settled):
        return 0.0
    ref = 0  # the latest sample at least a minute old, else the oldest
    for i, ts in enumerate(times):
        if ts <= now - RATE_WINDOW:
            ref = i
    elapsed = now - float(times[ref])
    counters = counters_of(doc)
    gained = counters["done"] + counters["failed"] - int(settled[ref])
    return max(gained, 0) / elapsed if elapsed > 0 else 0.0


def health(doc: Doc, submit_retries: int) -> tuple[str, str | None]:
    """``(health, reason)`` of a taskforce: ``failed`` when its submit was given up or every one of its workers
    ended in a fatal error or is held; ``failing`` when some are; else ``ok`` (reason None)."""
    attempts = int(doc.get(SUBMIT_FAILURES, 0) or 0)
    if doc["phase"] == str(Phase.PENDING_STARTER) and attempts > submit_retries:
        return FAILED, f"submit given up after {attempts} failed attempts: {_last_submit_error(doc)}"
    n_jobs = fatal = 0
    held: dict[str, int] = {}
    for condor, pilots in (doc.get("compound_statuses") or {}).items():
        for pilot, n in pilots.items():
            n_jobs += n
            if condor.startswith(HELD_PREFIX):
                held[condor] = held.get(condor, 0) + n
            elif pilot == PilotStatus.FATAL_ERROR:
                fatal += n
    bad = fatal + sum(held.values())
    if not bad:
        return OK, None
    errors = doc.get("top_task_errors") or {}
    if sum(held.values()) >= fatal or not errors:  # the held reason, else the pilots' most common last error
        why = max(held, key=lambda h: held[h]) if held else "no error reported"
    else:
        why = max(errors, key=lambda e: errors[e])
    if bad == n_jobs:
        return FAILED, f"all {n_jobs} workers ended in fatal errors or are held: {why}"
    return FAILING, f"{bad} of {n_jobs} workers ended in fatal errors or are held: {why}"


def overall(parts: Iterable[tuple[str, str | None]], what: str) -> tuple[str, str | None]:
    """The health of a group (task, workflow) from its members': ``failed`` when all failed, ``failing`` when all
    are failing or failed, else ``ok``; the reason names the first unhealthy member's."""
    members = list(parts)
    unhealthy = [(h, r) for h, r in members if h != OK]
    if not members or len(unhealthy) < len(members):
        return OK, None
    state = FAILED if all(h == FAILED for h, _ in members) else FAILING
    return state, f"all {len(members)} {what} {state}: {unhealthy[0][1]}"


def counted(doc: Doc) -> bool:
    """A taskforce counts towards its group's health unless a retry replaced it."""
    return not doc.get(RETRIED_AS)


def taskforce_view(doc: Doc, submit_retries: int, now: float | None = None) -> Doc:
    """The derived fields returned with a taskforce: ``event_rate``, ``health``, ``health_reason``."""
    state, reason = health(doc, submit_retries)
    return {"event_rate": rate(doc, time.time() if now is None else now), "health": state, "health_reason": reason}


def _last_submit_error(doc: Doc) -> str:
    for entry in reversed(doc.get("phase_change_log") or []):
        if entry.get("target_phase") == str(Phase.CONDOR_SUBMIT) and not entry.get("was_successful"):
            return str(entry.get("context") or "no error given")
    return "no error given"


def eta(remaining: int | None, events_per_s: float) -> float | None:
    """Seconds until ``remaining`` events are settled at ``events_per_s`` (0 when none remain, None if unknown)."""
    if remaining is None:
        return None
    if remaining == 0:
        return 0.0
    return remaining / events_per_s if events_per_s > 0 else None

