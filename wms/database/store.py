"""The WMS's MongoDB collections, their indexes, validated writes, and the query forms the database needs.

Workarounds for the embedded wire-protocol server (``nx-27017``) live here and only here: counts by the ``count``
command with ``$eq`` filters, log entries appended with ``$addToSet``, many-id lookups as one equality query per
id, equalities on scalar fields sent as ``$eq`` (:meth:`Store.exact`), pages in ``_id`` order by the ``_id.id``
path (:meth:`Store.page`). Domain code (``wms.operations``, ``wms.lifecycle``, daemons, handlers) calls these helpers
and otherwise reads as plain MongoDB.
"""

from __future__ import annotations

import logging
from typing import Any

from bson import ObjectId
from prometheus_client import CollectorRegistry
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from wms.database.command_log import CommandLog
from wms.database.exact_collection import ExactCollection
from wms.database.timed import TimedDatabase
from wms.schema import Spec

LOGGER = logging.getLogger(__name__)

Doc = dict[str, Any]

# internal bookkeeping fields start with "_" and never leave the service
SUBMIT_FAILURES = "_submit_failures"
RM_FAILURES = "_rm_failures"
MQ_ACTIVATED_TS = "_mq_activated_ts"
MQ_FAILURES = "_mq_failures"
MQ_RETRY_AT = "_mq_retry_at"
MQ_RETIRED = "_mq_retired"  # False until the queues of a deactivated workflow are scheduled for deletion
RETRIED_AS = "retried_as"  # taskforce (public, an extension): the uuid of the taskforce that retries it (set once)
N_RETRIES = "_n_retries"  # task directive: taskforces created by retry
N_ADDED = "_n_added"  # task directive: taskforces created by add-workers
LABELS_REV = "_labels_rev"  # workflow: bumped by every labels edit (optimistic concurrency)
UNSUBMITTED_SINCE = "_unsubmitted_since"  # taskforce: first seen pending-stopper without a cluster (epoch s)
ABORTED, FINISHED = "ABORTED", "FINISHED"  # the values of Workflow ``deactivated`` besides null
DEACTIVATION_KINDS = (ABORTED, FINISHED)
WRITE_CHUNK = 25  # requests per bulk write command (Store.write_each)
LOOKUPS_MAX = 25  # values Store.find_each looks up one by one; beyond, one ``$in``
TASK_LOG_KEYS = frozenset({"taskforce_uuid", "job_id"})  # the scalar keys task logs are selected by
OBJECTS = {"workflows": "WorkflowObject", "task_directives": "TaskDirectiveObject", "taskforces": "TaskforceObject"}
EMBEDDED_PROCESS = "nx_27017"  # what the embedded server's ``buildInfo`` names as its process (MongoDB names none)
EMBEDDED_ID_KEY = "_id.id"  # the embedded server keeps each ObjectId ``_id`` in the document as {"id": hex, ...}
SCALAR_TYPES = frozenset({"string", "number", "integer", "boolean", "null"})


def _is_operator(value: Any) -> bool:
    return isinstance(value, dict) and any(str(key).startswith("$") for key in value)


def append_log(entry: Doc) -> Doc:
    """The update appending one ``phase_change_log`` entry.

    ``$addToSet``, not ``$push``: the embedded server mangles subdocuments appended with ``$push``; the entries carry
    a timestamp, so they are distinct and nothing is lost.
    """
    return {"$addToSet": {"phase_change_log": entry}}


def push_bounded(values: Doc, keep: int) -> Doc:
    """The update appending one number to each of several parallel arrays, keeping the last ``keep`` of each.

    Numbers only: the embedded server stores a pushed array (or subdocument) as its JSON text; parallel arrays of
    numbers pushed in one update stay aligned.
    """
    return {"$push": {field: {"$each": [value], "$slice": -keep} for field, value in values.items()}}


def one_of(values: list[str]) -> Doc:
    """A filter value matching any of ``values``: use it beside an indexed equality (the embedded server evaluates
    ``$in`` on every document its other clauses select)."""
    return {"$in": values}


def scalar_fields(spec: Spec, object_name: str) -> frozenset[str]:
    """The top-level fields of an OpenAPI object that never hold an array or a document."""
    schemas = spec.doc["components"]["schemas"]
    found = set()
    for name, node in schemas[object_name]["properties"].items():
        while "$ref" in node:
            node = schemas[node["$ref"].rsplit("/", 1)[1]]
        types = node.get("type")
        if types is not None and SCALAR_TYPES.issuperset([types] if isinstance(types, str) else types):
            found.add(name)
    return frozenset(found)


async def is_embedded(db: AsyncDatabase[Doc]) -> bool:
    """True when ``db`` lives on the embedded ``nx-27017`` server."""
    return (await db.command("buildInfo")).get("process") == EMBEDDED_PROCESS


def public(doc: Doc) -> Doc:
    """The document as users see it: internal ``_`` fields removed."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}


class Store:
    """Collections ``workflows``, ``task_directives``, ``taskforces`` (schema-checked writes) and ``task_logs``."""

    def __init__(self, client: AsyncMongoClient[Doc], db_name: str, spec: Spec, log: CommandLog | None = None) -> None:
        """``log`` times every command sent through :attr:`db` (by default into a registry of its own)."""
        self.client = client
        self.db = TimedDatabase(client, db_name, log or CommandLog(CollectorRegistry(), 0))
        self.spec = spec
        self.scalars = {name: scalar_fields(spec, obj) for name, obj in OBJECTS.items()}
        self.scalars["task_logs"] = TASK_LOG_KEYS
        self.collections = {name: ExactCollection(self.db, name, scalars) for name, scalars in self.scalars.items()}
        self.workflows = self.collections["workflows"]
        self.task_directives = self.collections["task_directives"]
        self.taskforces = self.collections["taskforces"]
        self.task_logs = self.collections["task_logs"]
        self.archive: AsyncCollection[Doc] = self.db["archived_workflows"]
        self.id_key = "_id"  # the key of ``_id`` order; :meth:`ensure_indexes` sets it for the server

    async def detect_server(self) -> None:
        """Set :attr:`id_key` for the server: ``_id.id`` on the embedded server (see :meth:`page`), else ``_id``."""
        self.id_key = EMBEDDED_ID_KEY if await is_embedded(self.db) else "_id"

    async def ensure_indexes(self) -> None:
        """Create the indexes every query of the service and the TMS relies on (idempotent).

        Compound indexes follow equality, sort, range; which query uses which, and why, is in Docs/operations.md
        ("Indexes and query plans"). Those ending in ``self.id_key`` serve query pages (:meth:`page`).
        """
        await self.detect_server()
        page = (self.id_key, ASCENDING)
        await self.workflows.create_index("workflow_id", unique=True)
        await self.workflows.create_index([("owner", ASCENDING), page])
        await self.workflows.create_index([("deactivated", ASCENDING), (MQ_ACTIVATED_TS, ASCENDING)])
        await self.workflows.create_index([("deactivated", ASCENDING), (MQ_RETIRED, ASCENDING)])
        await self.workflows.create_index([("priority", DESCENDING), ("timestamp", ASCENDING)])
        await self.task_directives.create_index("task_id", unique=True)
        await self.task_directives.create_index([("workflow_id", ASCENDING)])
        await self.task_directives.create_index([("owner", ASCENDING), page])
        await self.taskforces.create_index("taskforce_uuid", unique=True)
        for field in ("workflow_id", "task_id", "phase", "cluster_id", "job_event_log_fpath"):
            await self.taskforces.create_index([(field, ASCENDING)])
        await self.taskforces.create_index([("owner", ASCENDING), page])
        await self.taskforces.create_index([("schedd", ASCENDING), ("phase", ASCENDING), page])
        await self.taskforces.create_index(
            [("schedd", ASCENDING), ("phase", ASCENDING), ("priority", DESCENDING), (SUBMIT_FAILURES, ASCENDING),
             ("timestamp", ASCENDING)]
        )  # fmt: skip
        await self.taskforces.create_index([("schedd", ASCENDING), ("phase", ASCENDING), ("timestamp", ASCENDING)])
        await self.taskforces.create_index([("phase", ASCENDING), ("priority", DESCENDING), ("timestamp", ASCENDING)])
        await self.taskforces.create_index([("schedd", ASCENDING), ("job_event_log_fpath", ASCENDING), page])
        await self.task_logs.create_index([("taskforce_uuid", ASCENDING), ("job_id", ASCENDING)], unique=True)
        await self.archive.create_index("workflow_id", unique=True)
        await self.archive.create_index([("archived_ts", ASCENDING)])
        LOGGER.info("indexes ensured on %s", self.db.name)

    async def count(self, coll: AsyncCollection[Doc], query: Doc) -> int:
        """The number of matching documents, by the ``count`` command.

        Not ``count_documents``: its aggregation is evaluated document by document on the embedded server (and
        there ignores a bare ``None``). Top-level values are sent as ``{"$eq": value}``, the same filter to MongoDB,
        which the embedded server answers from an index, while it scans the whole collection for a bare value (it
        also matches arrays holding that value).
        """
        filter_ = {k: v if k.startswith("$") or _is_operator(v) else {"$eq": v} for k, v in query.items()}
        reply = await self.db.command("count", coll.name, query=filter_)
        return int(reply["n"])

    def exact(self, coll: AsyncCollection[Doc], query: Doc) -> Doc:
        """``query`` as the store's ``coll`` sends it: each top-level equality on a scalar field as ``{"$eq": value}``
        (:mod:`wms.database.exact_collection`)."""
        exact = coll if isinstance(coll, ExactCollection) else self.collections.get(coll.name)
        return exact.exact(query) if exact is not None else dict(query)

    def page(
        self, coll: AsyncCollection[Doc], query: Doc, projection: Doc | None, after: ObjectId | None, limit: int
    ) -> AsyncCursor[Doc]:
        """At most ``limit`` documents matching ``query`` in ``_id`` order, after the one whose ``_id`` is ``after``
        (keyset pagination: every page costs the same, however deep).

        On the embedded server order and cursor go by ``_id.id``, the ObjectId's hex string it keeps in each
        document (the same order): it evaluates a range on ``_id`` in Python over the whole collection, and can sort
        on ``_id`` only after reading every match, while ``_id.id`` ends the compound indexes of
        :meth:`ensure_indexes`, so a page reads ``limit`` index entries.
        """
        filter_ = self.exact(coll, query)
        # beside a top-level operator ($or, $and, $nor) the embedded server matches no `_id.id` condition: such a
        # filter takes its cursor on `_id` (the same order; slower there, but right)
        key = "_id" if any(k.startswith("$") for k in filter_) else self.id_key
        if after is not None:
            filter_[key] = {"$gt": after if key == "_id" else str(after)}
        return coll.find(filter_, projection).sort(self.id_key, ASCENDING).limit(limit)

    async def find_each(self, coll: AsyncCollection[Doc], field: str, values: list[Any], projection: Doc) -> list[Doc]:
        """The documents whose ``field`` equals one of ``values``: by one indexed equality query per value, or for
        more than :data:`LOOKUPS_MAX` values by one ``$in`` (the embedded server answers ``$in`` by reading the
        whole collection: cheaper than many round trips queued behind other requests, dearer than a few)."""
        unique = list(dict.fromkeys(values))
        if len(unique) > LOOKUPS_MAX:
            return await coll.find({field: {"$in": unique}}, projection).to_list(None)
        found: list[Doc] = []
        for value in unique:
            found += await coll.find({field: value}, projection).to_list(None)
        return found

    async def write_each(self, coll: AsyncCollection[Doc], requests: list[Any]) -> list[int]:
        """Unordered bulk writes of at most :data:`WRITE_CHUNK` requests each: the embedded server runs one command
        at a time, so one long bulk write would hold up every other request (a few ms per update). As one unordered
        write, every request is tried; the write errors of all chunks are raised together at the end. The documents
        matched by each chunk, in order."""
        errors: list[Doc] = []
        matched: list[int] = []
        for start in range(0, len(requests), WRITE_CHUNK):
            try:
                result = await coll.bulk_write(requests[start : start + WRITE_CHUNK], ordered=False)
                matched.append(result.matched_count)
            except BulkWriteError as exc:  # the other requests were written: go on, and raise them all at the end
                errors += [{**e, "index": e.get("index", 0) + start} for e in exc.details.get("writeErrors", [])]
        if errors:
            raise BulkWriteError({"writeErrors": errors, "writeConcernErrors": [], "nInserted": 0, "nUpserted": 0,
                                  "nMatched": 0, "nModified": 0, "nRemoved": 0, "upserted": []})  # fmt: skip
        return matched

    async def take(self, coll: AsyncCollection[Doc], query: Doc, counter: str, cap: int) -> bool:
        """Count one more against ``counter`` of the matching document if it is below ``cap`` (one conditional
        update, so concurrent callers never pass the cap); False when the cap is reached or nothing matches."""
        result = await coll.update_one({**query, counter: {"$lt": cap}}, {"$inc": {counter: 1}})
        return bool(result.modified_count)

    async def give_back(self, coll: AsyncCollection[Doc], query: Doc, counter: str) -> None:
        """Undo a :meth:`take` whose operation did not happen."""
        await coll.update_one({**query, counter: {"$gt": 0}}, {"$inc": {counter: -1}})

    def check(self, object_name: str, doc: Doc) -> None:
        """Validate a whole document (internal fields aside) against its OpenAPI object schema."""
        self.spec.validate_object(object_name, public(doc))

    async def insert_many(self, coll: AsyncCollection[Doc], object_name: str, docs: list[Doc]) -> None:
        """Validate then insert documents (copies, so callers keep ``_id``-free dicts)."""
        await self.insert_in_order([(coll, object_name, docs)])

    async def insert_in_order(self, batches: list[tuple[AsyncCollection[Doc], str, list[Doc]]]) -> None:
        """Validate every document of every batch, then insert the batches in the given order, one
        ``insert_many`` each: nothing is written unless everything is valid."""
        for _coll, object_name, docs in batches:
            for doc in docs:
                self.check(object_name, doc)
        for coll, _object_name, docs in batches:
            if docs:
                await coll.insert_many([dict(d) for d in docs], ordered=True)
