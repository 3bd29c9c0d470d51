"""A hostile tenant tries to stall the database with its queries, and the parser with deep JSON: every such request
is refused with 400 before anything reaches the database, and the service keeps answering."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from apiclient import Api
from factories import workflow_request

from wms.auth import Role

QUERY_ROUTES = ("/v0/query/workflows", "/v0/query/task-directives", "/v0/query/taskforces")

# catastrophic backtracking, unanchored scans, classes and alternations: anything but a literal prefix
EVIL_REGEXES = [
    "^(a+)+$",
    "(a|aa)+$",
    "^(\\w+\\s?)*$",
    "(.*a){12}",
    "^(a|a?)+$",
    "a",
    "^a.*",
    "^[a-z]+",
    "^ab|cd",
    "^a{1,9999}",
    "^\\d",
    "^" + "a" * 65,
]


def _nested(depth: int, leaf: Any) -> Any:
    node = leaf
    for _ in range(depth):
        node = {"$and": [node]}
    return node


OVERSIZED_FILTERS = {
    "deep $and": _nested(10, {"workflow_id": "WF-1"}),
    "deep $elemMatch": {"labels": json.loads('{"$elemMatch": ' * 8 + '{"a": 1}' + "}" * 8)},
    "huge $in": {"workflow_id": {"$in": [f"WF-{i}" for i in range(5000)]}},
    "wide $or": {"$or": [{"labels.k": f"v{i}"} for i in range(500)]},
    "many keys": {f"labels.k{i}": "v" for i in range(300)},
}


async def _seed(api: Api) -> str:
    created = await api.ok("POST", "/v0/workflows", workflow_request())
    wid: str = created["workflow"]["workflow_id"]
    await api.ok("PATCH", f"/v0/workflows/{wid}", {"labels": {"name": "a" * 28 + "!"}})
    return wid


@pytest.mark.parametrize("route", QUERY_ROUTES)
@pytest.mark.parametrize("pattern", EVIL_REGEXES)
async def test_regex_other_than_a_literal_prefix_is_refused(api: Api, route: str, pattern: str) -> None:
    for query in ({"labels.name": {"$regex": pattern}}, {"workflow_id": {"$regex": pattern, "$options": "i"}}):
        problem = await api.problem("POST", route, {"query": query}, status=400)
        assert "$regex" in problem["detail"]


@pytest.mark.parametrize("options", ["s", "x", "m", "imsx", 1])
async def test_regex_options_are_limited_to_case_insensitivity(api: Api, options: Any) -> None:
    await api.problem(
        "POST", "/v0/query/workflows", {"query": {"workflow_id": {"$regex": "^WF-", "$options": options}}}
    )


async def test_literal_prefixes_still_match(api: Api) -> None:
    wid = await _seed(api)
    for pattern in ("^WF-", "^" + wid, "^" + wid.replace("-", "\\-")):
        page = await api.ok("POST", "/v0/query/workflows", {"query": {"workflow_id": {"$regex": pattern}}})
        assert [w["workflow_id"] for w in page["workflows"]] == [wid], pattern
    page = await api.ok("POST", "/v0/query/workflows", {"query": {"labels.name": {"$regex": "^AAA", "$options": "i"}}})
    assert [w["workflow_id"] for w in page["workflows"]] == [wid]


@pytest.mark.parametrize("name", sorted(OVERSIZED_FILTERS))
@pytest.mark.parametrize("route", QUERY_ROUTES)
async def test_deep_or_large_filters_are_refused(api: Api, route: str, name: str) -> None:
    problem = await api.problem("POST", route, {"query": OVERSIZED_FILTERS[name]}, status=400)
    assert "filter" in problem["detail"]


async def test_service_answers_at_once_after_hostile_queries(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    await _seed(api)
    for pattern in EVIL_REGEXES:
        await api.problem("POST", "/v0/query/workflows", {"query": {"labels.name": {"$regex": pattern}}})
    other = api_as(Role.USER, "bob")
    assert (await other.ok("POST", "/v0/query/workflows", {"query": {}}))["workflows"] == []


def _deep_json(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [100, 990, 5000, 100_000])
@pytest.mark.parametrize("kind", ["array", "object"])
async def test_deeply_nested_json_answers_400_on_every_body_route(
    api: Api,
    wms_server,
    make_token,
    depth: int,
    kind: str,  # type: ignore[no-untyped-def]
) -> None:
    wid = (await api.ok("POST", "/v0/workflows", workflow_request()))["workflow"]["workflow_id"]
    nested = _deep_json(depth, kind)
    bodies = {
        ("POST", "/v0/workflows"): '{"tasks": ' + nested + "}",
        ("POST", "/v0/query/workflows"): '{"query": {"labels.x": ' + nested + "}}",
        ("PATCH", f"/v0/workflows/{wid}"): '{"labels": ' + nested + "}",
        ("POST", f"/v0/workflows/{wid}/actions/abort"): nested,
    }
    tms_bodies = {("POST", "/v0/tms/statuses/taskforces"): '{"compound_statuses_by_taskforce": ' + nested + "}"}
    user = {"Authorization": f"Bearer {make_token(Role.USER, 'alice')}", "Content-Type": "application/json"}
    tms = {"Authorization": f"Bearer {make_token(Role.TMS, 'tms')}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=30) as client:
        for headers, routes in ((user, bodies), (tms, tms_bodies)):
            for (method, path), text in routes.items():
                response = await client.request(method, wms_server.url + path, content=text, headers=headers)
                assert response.status_code == 400, (method, path, response.status_code, response.text[:300])
                assert response.headers["content-type"].startswith("application/problem+json")
    assert (await api.ok("GET", f"/v0/workflows/{wid}"))["deactivated"] is None
