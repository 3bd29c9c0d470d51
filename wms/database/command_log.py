"""What each database command costs: a Prometheus histogram by command and collection, and a warning for every
command slower than ``DB_SLOW_COMMAND_MS`` (an operator's first look when requests slow down: on the embedded
server one slow scan holds up every other command). The store's database reports each command here
(:mod:`wms.database.timed`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

LOGGER = logging.getLogger(__name__)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class CommandLog:
    """The histogram ``ewms_wms_db_command_seconds`` and the slow-command warnings."""

    def __init__(self, registry: CollectorRegistry, slow_ms: float) -> None:
        self.slow_ms = slow_ms
        self.seconds = Histogram(
            "ewms_wms_db_command_seconds",
            "Database command latency as the WMS sees it",
            ["command", "collection"],
            buckets=BUCKETS,
            registry=registry,
        )
        self._observers: dict[tuple[str, str], Any] = {}  # the histogram's child per label pair, looked up once

    def timing(self, command: str, collection: str, query: Any) -> Timing:
        """``with log.timing(...):`` around one command observes it, failed or not."""
        return Timing(self, command, collection, query)

    def observe(self, command: str, collection: str, seconds: float, query: Any, failure: BaseException | None) -> None:
        """Count one command (a failure too: it can be slow, a timeout); warn when it was slow, naming the fields
        ``query`` filters on (never their values: they may be user data)."""
        key = (command, collection)
        observer = self._observers.get(key)
        if observer is None:
            observer = self._observers[key] = self.seconds.labels(*key)
        observer.observe(seconds)
        if self.slow_ms and seconds * 1000 >= self.slow_ms:
            outcome = f" and failed ({type(failure).__name__})" if failure is not None else ""
            fields = filter_fields(query)
            shape = f" (filter on {', '.join(fields)})" if fields else ""
            LOGGER.warning(
                "slow database command: %s on %s took %.0f ms%s%s", command, collection, seconds * 1000, outcome, shape
            )


def filter_fields(query: Any) -> list[str]:
    """The fields a command filters on: a filter's keys, or those of every request of a bulk write (pymongo keeps a
    request's filter as ``_filter``, as :mod:`wms.database.exact_collection` relies on too)."""
    if isinstance(query, Mapping):
        return sorted(map(str, query))
    if isinstance(query, list | tuple):
        filters = [getattr(request, "_filter", None) for request in query]
        return sorted({str(field) for f in filters if isinstance(f, Mapping) for field in f})
    return []


class Timing:
    """One command being timed (:meth:`CommandLog.timing`)."""

    __slots__ = ("_collection", "_command", "_log", "_query", "_started")

    def __init__(self, log: CommandLog, command: str, collection: str, query: Any) -> None:
        self._log, self._command, self._collection, self._query = log, command, collection, query
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, _type: type[BaseException] | None, exc: BaseException | None, _tb: TracebackType | None) -> None:
        seconds = time.perf_counter() - self._started
        self._log.observe(self._command, self._collection, seconds, self._query, exc)
