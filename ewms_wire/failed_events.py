"""Failed events as every part names them: the MQS's per-workflow failed-events queue alias and the header a pilot
puts the error in (read by ``ewms receive --failed`` and by the WMS's requeue)."""

from __future__ import annotations

FAILED_EVENTS_ALIAS = "@failed-events"
"""Alias of the queue every workflow gets for its failed events (user aliases cannot contain ``@``)."""

FAILED_HEADER = "ewms-failed"
"""The envelope header of a failed event: error, kind, exit code, stderr tail, input queue, pilot, job, time."""
