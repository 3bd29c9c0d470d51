"""Query routes: filters, projection, cursor pagination, page-size cap, refused operators."""

from __future__ import annotations

import pytest
from apiclient import Api
from factories import workflow_request


async def test_pagination_over_several_pages_with_projection(start_wms, make_token) -> None:  # type: ignore[no-untyped-def]
    server = await start_wms(QUERY_PAGE_SIZE_MAX="4")
    api = Api(server.url, make_token("user", "carol"))
    created = [await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha", "test-beta"))) for _ in range(5)]
    expected = sorted(tf["taskforce_uuid"] for c in created for tf in c["taskforces"])
    seen: list[str] = []
    body: dict = {
        "query": {"schedd": {"$in": ["schedd-alpha.test", "schedd-beta.test"]}},
        "projection": ["taskforce_uuid", "phase"],
        "limit": 50,
    }
    pages = 0
    while True:
        page = await api.ok("POST", "/v0/query/taskforces", body)
        pages += 1
        assert len(page["taskforces"]) <= 4  # capped by QUERY_PAGE_SIZE_MAX
        assert all(set(tf) == {"taskforce_uuid", "phase"} for tf in page["taskforces"])
        seen += [tf["taskforce_uuid"] for tf in page["taskforces"]]
        if page["next_after"] is None:
            break
        body["after"] = page["next_after"]
    assert pages == 3 and sorted(seen) == expected and len(set(seen)) == len(seen)


async def test_filters_on_nested_fields_and_other_collections(api: Api) -> None:
    created = await api.ok("POST", "/v0/workflows", workflow_request(("test-beta",)))
    wid = created["workflow"]["workflow_id"]
    page = await api.ok("POST", "/v0/query/task-directives", {"query": {"workflow_id": wid}})
    assert [d["task_id"] for d in page["task_directives"]] == [created["task_directives"][0]["task_id"]]
    page = await api.ok("POST", "/v0/query/taskforces", {"query": {"worker_config.n_cores": 1, "workflow_id": wid}})
    assert len(page["taskforces"]) == 1 and page["next_after"] is None
    page = await api.ok("POST", "/v0/query/workflows", {"query": {"workflow_id": {"$regex": "^WF-"}}})
    assert wid in [w["workflow_id"] for w in page["workflows"]]


@pytest.mark.parametrize(
    "query",
    [
        {"$where": "sleep(1000)"},
        {"workflow_id": {"$function": {"body": "x", "args": [], "lang": "js"}}},
        {"$expr": {"$gt": ["$priority", 1]}},
        {"$or": [{"priority": {"$accumulator": {}}}]},
        {"_mq_failures": 0},
        {"phase_change_log._secret": 1},
    ],
)
async def test_refused_operators_and_internal_fields(api: Api, query: dict) -> None:
    problem = await api.problem("POST", "/v0/query/taskforces", {"query": query}, status=400)
    assert "not allowed" in problem["detail"] or "cannot be queried" in problem["detail"]


async def test_bad_cursor_and_body(api: Api) -> None:
    await api.problem("POST", "/v0/query/workflows", {"query": {}, "after": "zzz"}, status=400)
    await api.problem("POST", "/v0/query/workflows", {"query": {}, "limit": 0}, status=400)
    await api.problem("POST", "/v0/query/workflows", {"query": {}, "projection": []}, status=400)
    await api.problem("POST", "/v0/query/workflows", {"filter": {}}, status=400)


def test_scoping_clauses_are_flat_unless_they_collide() -> None:
    from wms.handlers.queries import scoped

    assert scoped({"phase": "x"}, [{"owner": "a"}]) == {"phase": "x", "owner": "a"}
    assert scoped({}, [{"owner": "a"}, {"_id": 1}]) == {"owner": "a", "_id": 1}
    assert scoped({"owner": "b"}, [{"owner": "a"}]) == {"$and": [{"owner": "b"}, {"owner": "a"}]}
