"""Incremental, fault-tolerant reading of one job event log with ``htcondor2.JobEventLog``.

- Cheap when nothing changed: a ``stat`` decides whether the parser is called at all.
- Corrupt events: the parser raises and moves on, or stalls on garbage. A stall over bytes that were already on
  disk before a retry of the parser (so no writer is still busy with them) is skipped up to the next event header.
- A partly written event at the end waits until its writer finishes it: the parser is not even called while the
  file does not end with an event terminator (``htcondor2`` blocks for a second on a partial event), unless the
  tail stays unfinished for ``PARTIAL_TAIL_PATIENCE`` seconds (a writer that died mid-event).
- Rotation: a new inode at the path, or a file shorter than the read position, is read again from the top.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import htcondor2

LOGGER = logging.getLogger(__name__)

_HEADER = re.compile(rb"\n\d{3} \(-?\d+\.-?\d+\.-?\d+\) ")
_MAX_SCAN = 1 << 20
_TERMINATOR = b"\n...\n"
PARTIAL_TAIL_PATIENCE = 5.0
READ_ERRORS = (htcondor2.HTCondorException, ValueError, RuntimeError, OSError)


class LogGone(Exception):
    """The log file no longer exists."""


class LogReader:
    """Yields new events of one log on each :meth:`read`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._jel: htcondor2.JobEventLog | None = None
        self._inode = -1
        self._exhausted_at: tuple[int, int, int] | None = None  # (inode, size, mtime_ns) when last caught up
        self._partial_tail: tuple[tuple[int, int, int], float] | None = None  # (file state, first seen)
        self.exhausted = True
        self.waiting_for_tail = False  # caught up with all but an unfinished event at the end
        self.n_corrupt = 0
        self.n_rotations = 0

    def has_news(self) -> bool:
        """Whether the file changed since the reader last caught up; raises LogGone."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError as exc:
            raise LogGone(str(self.path)) from exc
        return not self.exhausted or self._exhausted_at != (st.st_ino, st.st_size, st.st_mtime_ns)

    def read(self, limit: int) -> Iterator[htcondor2.JobEvent]:
        """Up to ``limit`` new events; sets :attr:`exhausted` when it caught up with the file. Raises LogGone."""
        st = self._open_or_rotate()
        self.waiting_for_tail = not self._tail_ready(st)
        if self.waiting_for_tail:
            self.exhausted = True
            return
        self.exhausted = False
        produced = 0
        stall: tuple[int, bytes] | None = None
        while True:
            assert self._jel is not None
            before = _offset(self._jel)
            try:
                for event in self._jel.events(0):
                    yield event
                    produced += 1
                    if produced >= limit:
                        return
            except READ_ERRORS as exc:
                self.n_corrupt += 1
                LOGGER.warning("%s: unreadable event near byte %d (%s: %s)", self.path, before, type(exc).__name__, exc)
                if _offset(self._jel) != before:
                    continue
            offset = _offset(self._jel)
            st = os.stat(self.path)
            if offset >= st.st_size:
                break
            if stall is None or stall[0] != offset:
                # stuck before the end: note the bytes on disk now, then let the parser try once more
                stall = (offset, self._bytes_at(offset, st.st_size))
                continue
            if not self._skip_garbage(offset, stall[1]):
                break  # an event still being written: wait for the rest
            stall = None
        self.exhausted = True
        self._exhausted_at = (st.st_ino, st.st_size, st.st_mtime_ns)

    def close(self) -> None:
        """Release the file."""
        if self._jel is not None:
            self._jel.close()
            self._jel = None

    def _open_or_rotate(self) -> os.stat_result:
        try:
            st = os.stat(self.path)
        except FileNotFoundError as exc:
            raise LogGone(str(self.path)) from exc
        if self._jel is not None and (st.st_ino != self._inode or st.st_size < _offset(self._jel)):
            self.n_rotations += 1
            LOGGER.warning("%s was replaced or truncated; reading it again from the start", self.path)
            self.close()
        if self._jel is None:
            self._jel = htcondor2.JobEventLog(str(self.path))
            self._inode = st.st_ino
        return st

    def _tail_ready(self, st: os.stat_result) -> bool:
        """Whether the file ends with a whole event (or has ended in the same unfinished one for long enough)."""
        if st.st_size < len(_TERMINATOR) or self._bytes_at(st.st_size - len(_TERMINATOR), st.st_size) == _TERMINATOR:
            self._partial_tail = None
            return True
        state = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._partial_tail is None or self._partial_tail[0] != state:
            self._partial_tail = (state, time.monotonic())
        return time.monotonic() - self._partial_tail[1] >= PARTIAL_TAIL_PATIENCE

    def _bytes_at(self, offset: int, size: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(min(size - offset, _MAX_SCAN))

    def _skip_garbage(self, offset: int, data: bytes) -> bool:
        """Move past bytes the parser refused twice; False when they may be an event still being written."""
        match = _HEADER.search(data)
        if match is not None:
            target = offset + match.start() + 1
        elif data.endswith(b"\n...\n"):
            target = offset + len(data)
        else:
            return False
        self.n_corrupt += 1
        LOGGER.warning("%s: skipped %d unparseable bytes at byte %d", self.path, target - offset, offset)
        assert self._jel is not None
        self._jel = _seek(self._jel, target)
        return True


def _offset(jel: htcondor2.JobEventLog) -> int:
    """Read position, through the pickling protocol that ``JobEventLog`` documents."""
    return int(jel.__getstate__()[1])


def _seek(jel: htcondor2.JobEventLog, offset: int) -> htcondor2.JobEventLog:
    """A reader of the same file positioned at ``offset`` (the old one is closed)."""
    state, _ = jel.__getstate__()
    moved = htcondor2.JobEventLog.__new__(htcondor2.JobEventLog)
    moved.__setstate__((state, offset))
    jel.close()
    return moved
