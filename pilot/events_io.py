"""Event envelopes on the wire and the task's input/output files.

Wire format (the same as oms-mqclient's ``Message.serialize``, so user scripts using it interoperate):
``zstd.compress(json.dumps({"headers": {...}, "data": <data>}).encode())``.

Files: with a ``.json`` extension the data is any JSON value, written and read with :mod:`json`. Otherwise the data
is text (``str``), written as UTF-8; a task output that is not valid UTF-8 travels as base64 text with the header
``ewms-pilot-data-encoding: base64``, and an input carrying that header is written back as the original bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstd

from pilot.errors import TaskInputError, TaskOutputError

ENCODING_HEADER = "ewms-pilot-data-encoding"
BASE64 = "base64"


@dataclass(frozen=True)
class Event:
    """One event's data and envelope headers."""

    data: Any
    headers: dict[str, Any] = field(default_factory=dict)

    @property
    def is_base64_bytes(self) -> bool:
        """True when ``data`` is base64 text standing for raw bytes."""
        return self.headers.get(ENCODING_HEADER) == BASE64 and isinstance(self.data, str)


def encode_event(event: Event) -> bytes:
    """Serialize an event the way oms-mqclient does."""
    return bytes(zstd.compress(json.dumps({"headers": event.headers, "data": event.data}).encode()))


def decode_event(body: bytes) -> Event:
    """Parse an oms-mqclient envelope; raise :class:`TaskInputError` when the body is not one."""
    try:
        envelope = json.loads(zstd.decompress(body))
    except (zstd.Error, ValueError) as exc:
        raise TaskInputError(f"event is not an oms-mqclient envelope (zstd-compressed JSON): {exc}") from exc
    if not isinstance(envelope, dict) or "data" not in envelope:
        raise TaskInputError("event envelope has no 'data' field")
    headers = envelope.get("headers")
    return Event(envelope["data"], headers if isinstance(headers, dict) else {})


def _is_json(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def write_infile(path: Path, event: Event) -> None:
    """Write the event's data where the task reads it."""
    if _is_json(path):
        _write(path, json.dumps(event.data).encode())
    elif event.is_base64_bytes:
        try:
            _write(path, base64.b64decode(event.data, validate=True))
        except binascii.Error as exc:
            raise TaskInputError(f"event marked {ENCODING_HEADER}={BASE64} is not valid base64") from exc
    elif isinstance(event.data, str):
        _write(path, event.data.encode())
    else:
        raise TaskInputError(
            f"event data is a {type(event.data).__name__}, but infile extension {path.suffix!r} takes only "
            "text: use EWMS_PILOT_INFILE_EXT=.json for JSON events"
        )


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to a new or truncated file, unbuffered (fewer system calls: one per event matters)."""
    with open(path, "wb", buffering=0) as f:
        view = memoryview(data)
        while view:
            view = view[f.write(view) :]


def read_outfile(path: Path) -> Event | None:
    """Read what the task wrote; ``None`` when it wrote no output file."""
    try:
        with open(path, "rb", buffering=0) as f:
            raw = f.readall()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TaskOutputError(f"cannot read the task's output file: {exc}") from exc
    if _is_json(path):
        try:
            return Event(json.loads(raw))
        except ValueError as exc:
            raise TaskOutputError(f"task output is not valid JSON: {exc}") from exc
    try:
        return Event(raw.decode())
    except UnicodeDecodeError:
        return Event(base64.b64encode(raw).decode(), {ENCODING_HEADER: BASE64})
