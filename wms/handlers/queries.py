"""Query routes: a MongoDB filter from an allow-list of operators, projection, cursor pagination."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from bson import ObjectId
from bson.errors import InvalidId

from wms.auth import Role
from wms.database.store import public
from wms.handlers.base import ANYONE, BaseHandler, Problem

ALLOWED_OPERATORS = frozenset(
    {
        "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
        "$and", "$or", "$nor", "$exists", "$type", "$regex", "$options",
        "$elemMatch", "$size", "$all",
    }
)  # fmt: skip


def check_filter(node: Any, path: str = "query") -> None:
    """Refuse operators outside the allow-list (``$where``, ``$function``, ``$expr`` ...) and internal fields."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise Problem(400, f"{path}: keys must be strings")
            if key.startswith("$") and key not in ALLOWED_OPERATORS:
                allowed = ", ".join(sorted(ALLOWED_OPERATORS))
                raise Problem(400, f"{path}: operator {key} is not allowed (allowed: {allowed})")
            if not key.startswith("$") and any(part.startswith("_") for part in key.split(".")):
                raise Problem(400, f"{path}: field {key!r} cannot be queried")
            check_filter(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            check_filter(item, f"{path}[{index}]")


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
        check_filter(body["query"])
        config = self.wms.config
        limit = min(int(body.get("limit", config.query_page_size_default)), config.query_page_size_max)
        clauses: list[dict[str, Any]] = []
        caller = self.require_caller()
        if not (caller.is_admin or Role.TMS in caller.roles):
            clauses.append({"owner": caller.subject})
        if "after" in body:
            try:
                clauses.append({"_id": {"$gt": ObjectId(body["after"])}})
            except (InvalidId, TypeError) as exc:
                raise Problem(400, f"'after' is not a cursor from a previous page: {body['after']!r}") from exc
        query = scoped(body["query"], clauses)
        projection: dict[str, bool] | None = None
        if "projection" in body:
            fields = [f for f in body["projection"] if not f.startswith("_")]
            projection = {f: True for f in fields}
            projection["_id"] = True
        cursor = self.wms.store.db[self.COLLECTION].find(query, projection).sort("_id", 1).limit(limit + 1)
        docs = await cursor.to_list(None)
        items: list[dict[str, Any]] = []
        sent_ids: list[ObjectId] = []
        size = 0
        next_after = str(docs[limit - 1]["_id"]) if len(docs) > limit else None
        for doc in docs[:limit]:
            item = public(doc)
            size += len(json.dumps(item))
            if items and size > config.query_max_bytes:  # page cut by size: resume after the last item sent
                next_after = str(sent_ids[-1])
                break
            items.append(item)
            sent_ids.append(doc["_id"])
        self.send({self.RESULT_KEY: items, "next_after": next_after})


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
