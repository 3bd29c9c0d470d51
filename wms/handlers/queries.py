"""Query routes: a MongoDB filter from an allow-list of operators, projection, keyset pagination in ``_id`` order
(``next_after`` is the ``_id`` of a page's last item; :meth:`wms.database.store.Store.page`).

A user's filter is bounded before it is sent, because the embedded database server runs one query at a time and
ignores ``maxTimeMS``: at most ``USER_QUERY_MAX_DEPTH`` levels and ``USER_QUERY_MAX_TERMS`` keys and list items,
``$regex`` only as an anchored literal prefix (``^abc``, punctuation escaped as ``\\.``; ``$options`` ``i`` at most)
of at most ``USER_QUERY_REGEX_MAX_LENGTH`` characters. On MongoDB each query also gets ``USER_QUERY_TIME_MS``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.errors import ExecutionTimeout

from wms.auth import Role
from wms.config import WMSConfig
from wms.database.store import public
from wms.handlers.base import ANYONE, BaseHandler, Problem, encode

ALLOWED_OPERATORS = frozenset(
    {
        "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
        "$and", "$or", "$nor", "$exists", "$type", "$regex", "$options",
        "$elemMatch", "$size", "$all",
    }
)  # fmt: skip
LITERAL_PREFIX = re.compile(r"\^(?:[^\\.^$*+?{}\[\]|()]|\\[^0-9A-Za-z])*")  # ^ then literal characters
REGEX_OPTIONS = ("", "i")


def check_filter(query: Any, config: WMSConfig) -> None:
    """Refuse (400) a filter that could cost the database more than a bounded scan: operators outside the
    allow-list (``$where``, ``$function``, ``$expr`` ...), internal fields, any ``$regex`` but an anchored literal
    prefix, and filters deeper or larger than configured."""
    terms = 0
    stack: list[tuple[Any, str, int]] = [(query, "query", 1)]
    while stack:
        node, path, depth = stack.pop()
        if not isinstance(node, dict | list):
            continue
        if depth > config.query_max_depth:
            raise Problem(400, f"{path}: the filter nests deeper than {config.query_max_depth} levels")
        terms += len(node)
        if terms > config.query_max_terms:
            raise Problem(400, f"the filter has more than {config.query_max_terms} keys and list items")
        if isinstance(node, list):
            stack.extend((item, f"{path}[{index}]", depth + 1) for index, item in enumerate(node))
            continue
        for key, value in node.items():
            _check_key(key, value, path, config)
            stack.append((value, f"{path}.{key}", depth + 1))


def _check_key(key: str, value: Any, path: str, config: WMSConfig) -> None:
    if key.startswith("$") and key not in ALLOWED_OPERATORS:
        allowed = ", ".join(sorted(ALLOWED_OPERATORS))
        raise Problem(400, f"{path}: operator {key} is not allowed (allowed: {allowed})")
    if not key.startswith("$") and any(part.startswith("_") for part in key.split(".")):
        raise Problem(400, f"{path}: field {key!r} cannot be queried")
    if key == "$regex" and not (
        isinstance(value, str)
        and len(value) <= config.query_regex_max_length
        and LITERAL_PREFIX.fullmatch(value)
    ):
        raise Problem(
            400,
            f"{path}.$regex: only an anchored literal prefix such as '^abc' (punctuation escaped, at most"
            f" {config.query_regex_max_length} characters) is allowed",
        )
    if key == "$options" and value not in REGEX_OPTIONS:
        raise Problem(400, f"{path}.$options: only '' or 'i' is allowed")


def scoped(user_query: dict[str, Any], clauses: list[dict[str, Any]]) -> dict[str, Any]:
    """The user's filter with the scoping clauses added as sibling keys (the embedded server runs a flat filter
    far faster than ``$and``); a clause whose key the user's filter already uses goes into ``$and``."""
    flat = dict(user_query)
    nested = []
    for clause in clauses:
        if clause.keys() & flat.keys():
            nested.append(clause)
        else:
            flat.update(clause)
    return {"$and": [flat, *nested]} if nested else flat


class _QueryHandler(BaseHandler):
    COLLECTION: ClassVar[str]
    RESULT_KEY: ClassVar[str]
    ROLES = {"POST": ANYONE}

    async def post(self) -> None:
        """Return one page of matching objects and the cursor of the next page (``next_after``)."""
        body: dict[str, Any] = self.body
        config = self.wms.config
        check_filter(body["query"], config)
        limit = min(int(body.get("limit", config.query_page_size_default)), config.query_page_size_max)
        clauses: list[dict[str, Any]] = []
        caller = self.require_caller()
        if not (caller.is_admin or Role.TMS in caller.roles):
            clauses.append({"owner": caller.subject})
        after = None
        if "after" in body:
            try:
                after = ObjectId(body["after"])
            except (InvalidId, TypeError) as exc:
                raise Problem(400, f"'after' is not a cursor from a previous page: {body['after']!r}") from exc
        projection: dict[str, bool] | None = None
        if "projection" in body:
            fields = [f for f in body["projection"] if not f.startswith("_")]
            projection = {f: True for f in fields}
            projection["_id"] = True
        store = self.wms.store
        coll = store.collections[self.COLLECTION]
        cursor = store.page(coll, scoped(body["query"], clauses), projection, after, limit + 1)
        try:
            docs = await cursor.max_time_ms(config.query_time_ms).to_list(None)
        except ExecutionTimeout as exc:
            raise Problem(400, f"the query exceeded its time budget of {config.query_time_ms} ms: narrow it") from exc
        items: list[bytes] = []  # each item encoded once: its size decides the cut, and it is sent as encoded
        sent_ids: list[ObjectId] = []
        size = 0
        next_after = str(docs[limit - 1]["_id"]) if len(docs) > limit else None
        for doc in docs[:limit]:
            item = encode(public(doc))
            size += len(item)
            if items and size > config.query_max_bytes:  # page cut by size: resume after the last item sent
                next_after = str(sent_ids[-1])
                break
            items.append(item)
            sent_ids.append(doc["_id"])
        page = b"".join((b'{"', self.RESULT_KEY.encode(), b'":[', b",".join(items), b'],"next_after":'))
        self.send_encoded(page + encode(next_after) + b"}")


class WorkflowsQueryHandler(_QueryHandler):
    """``POST /v0/query/workflows``."""

    ROUTE = "/query/workflows"
    COLLECTION = "workflows"
    RESULT_KEY = "workflows"


class TaskDirectivesQueryHandler(_QueryHandler):
    """``POST /v0/query/task-directives``."""

    ROUTE = "/query/task-directives"
    COLLECTION = "task_directives"
    RESULT_KEY = "task_directives"


class TaskforcesQueryHandler(_QueryHandler):
    """``POST /v0/query/taskforces``."""

    ROUTE = "/query/taskforces"
    COLLECTION = "taskforces"
    RESULT_KEY = "taskforces"
