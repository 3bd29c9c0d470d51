"""A database whose commands are timed by the store itself (:class:`wms.database.command_log.CommandLog`).

Everything the WMS sends goes through ``Store.db``, a :class:`TimedDatabase`: its collections (the store's, the
MQS's, the daemon lease's) are :class:`TimedCollection`, whose command-issuing methods and cursor round trips
(``find``, ``getMore``) are timed, and so is ``command``. Timing here costs a few microseconds per command; pymongo's
command monitoring, which builds an event per command, cost 10 % of the WMS's CPU per taskforce read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase

from wms.database.command_log import CommandLog

Doc = dict[str, Any]

# collection method -> position of its filter argument, or of a bulk write's requests (None: it takes none, or names
# no fields worth logging)
TIMED_METHODS: dict[str, int | None] = {
    "insert_one": None,
    "insert_many": None,
    "update_one": 0,
    "update_many": 0,
    "replace_one": 0,
    "delete_one": 0,
    "delete_many": 0,
    "find_one_and_update": 0,
    "find_one_and_replace": 0,
    "find_one_and_delete": 0,
    "bulk_write": 0,
    "count_documents": 0,
    "distinct": 1,
    "aggregate": None,
    "create_index": None,
    "create_indexes": None,
    "drop_index": None,
    "drop": None,
}


class TimedDatabase(AsyncDatabase[Doc]):
    """An ``AsyncDatabase`` whose collections are :class:`TimedCollection` and whose ``command`` is timed."""

    def __init__(self, client: AsyncMongoClient[Doc], name: str, log: CommandLog) -> None:
        super().__init__(client, name)
        self.log = log

    def __getitem__(self, name: str) -> TimedCollection:
        """The collection ``name``, timed."""
        return TimedCollection(self, name)

    def get_collection(self, name: str, *args: Any, **kwargs: Any) -> TimedCollection:
        """The collection ``name``, timed."""
        return TimedCollection(self, name, False, *args, **kwargs)

    async def command(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        """``command``, timed (by the command's name, and the collection when it names one)."""
        if isinstance(command, str):
            name, target, query = command, args[0] if args else None, kwargs.get("query")
        else:
            name = next(iter(command), "?")
            target, query = command.get(name), command.get("query")
        with self.log.timing(name, target if isinstance(target, str) else "-", query):
            return await super().command(command, *args, **kwargs)


class TimedCollection(AsyncCollection[Doc]):
    """An ``AsyncCollection`` timing each command it sends (:data:`TIMED_METHODS`, and cursors' round trips)."""

    def __init__(self, database: TimedDatabase, name: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, name, *args, **kwargs)
        self.log = database.log

    def find(self, *args: Any, **kwargs: Any) -> AsyncCursor[Doc]:
        """A cursor timing each of its round trips."""
        return TimedCursor(self, *args, **kwargs)


def _timed(method: str, filter_at: int | None) -> Callable[..., Any]:
    base = getattr(AsyncCollection, method)

    async def call(self: TimedCollection, *args: Any, **kwargs: Any) -> Any:
        query = None if filter_at is None else args[filter_at] if len(args) > filter_at else kwargs.get("filter")
        with self.log.timing(method, self.name, query):
            return await base(self, *args, **kwargs)

    call.__name__ = call.__qualname__ = method
    call.__doc__ = f"``{method}``, timed."
    return call


for _method, _filter_at in TIMED_METHODS.items():
    setattr(TimedCollection, _method, _timed(_method, _filter_at))


class TimedCursor(AsyncCursor[Doc]):
    """A ``find`` cursor timing each round trip (the ``find``, then each ``getMore``)."""

    def __init__(self, collection: TimedCollection, *args: Any, **kwargs: Any) -> None:
        super().__init__(collection, *args, **kwargs)
        self._log = collection.log
        self._query = args[0] if args else kwargs.get("filter")

    async def _send_message(self, operation: Any) -> None:
        # the one method of pymongo's cursor that sends a round trip (private: tests/wms/test_command_log.py checks
        # on the wire that every round trip is counted)
        name = getattr(operation, "name", "find")
        with self._log.timing(name, self.collection.name, self._query if name == "find" else None):
            await super()._send_message(operation)
