"""Failed events: an event whose task failed, as published to the failed-events queue (``EWMS_PILOT_QUEUE_FAILED``).

A failed event is an oms-mqclient envelope (see :mod:`pilot.events_io`): its ``data`` is the input event's data,
unchanged (so it can be sent again as it is), and its ``headers`` are the input's headers plus ``ewms-failed``::

    {"error": "task failed (exit code 3): ...", "kind": "TaskExitError", "exit_code": 3, "stderr_tail": "...",
     "input_queue": "<queue>", "pilot": "<host>:<pid>", "job": "<cluster>.<proc>" | null, "failed_at": <epoch>}

``exit_code`` is null unless the task ran to an exit (negative: killed by that signal). An input that was not an
envelope at all (``TaskInputError``) is kept whole: ``data`` is null and ``ewms-failed.raw_body_base64`` holds it.
"""

from __future__ import annotations

import base64
import os
import socket
import time
from typing import Any

from ewms_wire.failed_events import FAILED_HEADER
from pilot.config import ReportingConfig
from pilot.errors import TaskError, TaskInputError
from pilot.events_io import Event, decode_event, encode_event


def pilot_identity(reporting: ReportingConfig) -> tuple[str, str | None]:
    """``host:pid``, and the ``cluster.proc`` of the pilot's job when the environment names it."""
    job = f"{reporting.cluster_id}.{reporting.proc_id}" if reporting.job_event_log is not None else None
    return f"{socket.gethostname()}:{os.getpid()}", job


def failed_event_body(body: bytes, error: TaskError, input_queue: str, identity: tuple[str, str | None]) -> bytes:
    """The failed-events envelope for the input ``body`` whose task failed with ``error``."""
    record: dict[str, Any] = {
        "error": str(error),
        "kind": error.kind,
        "exit_code": error.exit_code,
        "stderr_tail": error.stderr_tail,
        "input_queue": input_queue,
        "pilot": identity[0],
        "job": identity[1],
        "failed_at": time.time(),
    }
    try:
        event = decode_event(body)
    except TaskInputError:
        record["raw_body_base64"] = base64.b64encode(body).decode()
        event = Event(None)
    return encode_event(Event(event.data, {**event.headers, FAILED_HEADER: record}))
