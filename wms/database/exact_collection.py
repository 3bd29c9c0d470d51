"""A collection that sends every top-level equality on a scalar field as ``{"$eq": value}``: the same filter to
MongoDB, and on the embedded server (nx-27017) the difference between an index lookup and a scan.

The embedded server answers a bare value (``{"taskforce_uuid": u}``) with an index lookup OR an array-containment
test, which no index serves: an update by uuid then scans the collection (about 13 ms over 10,000 taskforces,
against 0.3 ms with ``$eq``). Fields that may hold an array keep their bare value (its containment meaning). Every
filter of a read or a write goes through :meth:`ExactCollection.exact`, bulk requests included, so domain code
writes plain MongoDB.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.results import BulkWriteResult, DeleteResult, UpdateResult

from wms.database.timed import TimedCollection, TimedDatabase

Doc = dict[str, Any]


class ExactCollection(TimedCollection):
    """A (timed) collection whose filters are made exact (see the module)."""

    def __init__(self, database: TimedDatabase, name: str, scalars: frozenset[str]) -> None:
        super().__init__(database, name)
        self.scalars = scalars

    def exact(self, query: Mapping[str, Any]) -> Doc:
        """``query`` with each top-level equality on a scalar field sent as ``{"$eq": value}``, also inside a
        top-level ``$and``."""
        out: Doc = {}
        for key, value in query.items():
            if key == "$and" and isinstance(value, list):
                value = [self.exact(part) if isinstance(part, Mapping) else part for part in value]
            elif key in self.scalars and isinstance(value, str | int | float | bool):
                value = {"$eq": value}
            out[key] = value
        return out

    def _filter(self, query: Any) -> Any:
        return self.exact(query) if isinstance(query, Mapping) else query

    def find(self, *args: Any, **kwargs: Any) -> AsyncCursor[Doc]:
        """``find`` with an exact filter."""
        if args:
            args = (self._filter(args[0]), *args[1:])
        elif "filter" in kwargs:
            kwargs["filter"] = self._filter(kwargs["filter"])
        return super().find(*args, **kwargs)

    async def update_one(self, filter: Mapping[str, Any], *args: Any, **kwargs: Any) -> UpdateResult:
        """``update_one`` with an exact filter."""
        return await super().update_one(self.exact(filter), *args, **kwargs)

    async def update_many(self, filter: Mapping[str, Any], *args: Any, **kwargs: Any) -> UpdateResult:
        """``update_many`` with an exact filter."""
        return await super().update_many(self.exact(filter), *args, **kwargs)

    async def delete_one(self, filter: Mapping[str, Any], *args: Any, **kwargs: Any) -> DeleteResult:
        """``delete_one`` with an exact filter."""
        return await super().delete_one(self.exact(filter), *args, **kwargs)

    async def delete_many(self, filter: Mapping[str, Any], *args: Any, **kwargs: Any) -> DeleteResult:
        """``delete_many`` with an exact filter."""
        return await super().delete_many(self.exact(filter), *args, **kwargs)

    async def find_one_and_update(self, filter: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
        """``find_one_and_update`` with an exact filter."""
        return await super().find_one_and_update(self.exact(filter), *args, **kwargs)

    async def find_one_and_delete(self, filter: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
        """``find_one_and_delete`` with an exact filter."""
        return await super().find_one_and_delete(self.exact(filter), *args, **kwargs)

    async def bulk_write(self, requests: Iterable[Any], *args: Any, **kwargs: Any) -> BulkWriteResult:
        """``bulk_write`` with each request's filter made exact (requests carry it as ``_filter``)."""
        exact = []
        for request in requests:
            if isinstance(getattr(request, "_filter", None), Mapping):
                request = copy.copy(request)
                request._filter = self.exact(request._filter)
            exact.append(request)
        return await super().bulk_write(exact, *args, **kwargs)
