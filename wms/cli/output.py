"""Printing: JSON documents, aligned tables, times and short summaries."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any


def add_json_option(parser: argparse.ArgumentParser, help: str = "print the full JSON response") -> None:
    """Add ``--json``."""
    parser.add_argument("--json", action="store_true", help=help)


def print_json(obj: Any) -> None:
    """Print an indented JSON document."""
    print(json.dumps(obj, indent=2))


def cell(value: Any) -> str:
    """A table cell: strings as they are, ``-`` for null, anything else as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces (the last column is not padded)."""
    cells = [list(headers), *([cell(v) for v in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ("  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)), r[-1]]) for r in cells)
    return "\n".join(line.rstrip() for line in lines)


def when(timestamp: float | None) -> str:
    """An epoch time as local ``YYYY-MM-DD HH:MM:SS``."""
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """``8 s``, ``3 min 20 s``, ``2 h 05 min``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def ago(timestamp: float | None, now: float | None = None) -> str:
    """How long ago an epoch time was: ``5 min 02 s ago``; ``-`` when unknown."""
    if timestamp is None:
        return "-"
    return f"{duration(max((now or time.time()) - timestamp, 0))} ago"


def shorten(text: str, width: int) -> str:
    """One line of at most ``width`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 3] + "..."


def plural(count: int, noun: str) -> str:
    """``1 worker``, ``3 workers``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def note(message: str) -> None:
    """A progress or summary line on stderr (keeps stdout clean for data)."""
    print(message, file=sys.stderr)
