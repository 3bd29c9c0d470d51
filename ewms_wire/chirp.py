"""The pilot's status contract: statuses and the ``HTChirpEWMSPilot*`` attributes the TMS watcher reads.

A pilot reports ``"<Attr>: <classad-quoted value>"`` lines, as HTChirp ``ulog`` generic events in the job event log
(inside HTCondor) or through :mod:`ewms_wire.job_event_log` (local backend). Same strings as the ecosystem pilot.
"""

from __future__ import annotations

import enum

import classad2

ATTR_PREFIX = "HTChirpEWMSPilot"


class PilotStatus(enum.StrEnum):
    """Lifecycle statuses a pilot reports, in order."""

    STARTED = "Started"
    RUNNING_INIT_COMMAND = "RunningInitCommand"
    AWAITING_FIRST_MESSAGE = "AwaitingFirstMessage"
    TASKING = "Tasking"
    PENDING_REMAINING_TASKS = "PendingRemainingTasks"
    FATAL_ERROR = "FatalError"
    DONE = "Done"


class ChirpAttr(enum.StrEnum):
    """Attribute names carried in chirp lines."""

    STATUS = "HTChirpEWMSPilotStatus"
    TASKS_TOTAL = "HTChirpEWMSPilotTasksTotal"
    TASKS_FAILED = "HTChirpEWMSPilotTasksFailed"
    TASKS_SUCCESS = "HTChirpEWMSPilotTasksSuccess"
    ERROR = "HTChirpEWMSPilotError"
    ERROR_TRACEBACK = "HTChirpEWMSPilotErrorTraceback"
    STARTED_TIMESTAMP = "HTChirpEWMSPilotStartedTimestamp"
    LAST_UPDATED_TIMESTAMP = "HTChirpEWMSPilotLastUpdatedTimestamp"


ChirpValue = str | int | float


def format_chirp(attr: ChirpAttr, value: ChirpValue) -> str:
    """Render one chirp line; strings are classad-quoted and kept on one line."""
    if isinstance(value, str):
        rendered = classad2.quote(value).replace("\r", "\\r").replace("\n", "\\n")
    else:
        rendered = repr(value)
    return f"{attr.value}: {rendered}"


def parse_chirp(info: str) -> tuple[ChirpAttr, ChirpValue] | None:
    """Parse a generic event's text; ``None`` when it is not a pilot chirp or is malformed."""
    if not info.startswith(ATTR_PREFIX):
        return None
    name, sep, raw = info.partition(": ")
    if not sep:
        return None
    try:
        attr = ChirpAttr(name)
    except ValueError:
        return None
    raw = raw.strip()
    if raw.startswith('"'):
        try:
            return attr, classad2.unquote(raw.replace("\\n", "\n").replace("\\r", "\r"))
        except Exception:  # malformed quoting: keep the raw text rather than lose the report
            return attr, raw.strip('"')
    try:
        return attr, int(raw)
    except ValueError:
        try:
            return attr, float(raw)
        except ValueError:
            return attr, raw
