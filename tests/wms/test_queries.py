"""Query routes: filters, projection, keyset pagination, page-size cap, refused operators; the store's query forms."""

from __future__ import annotations

import json
from typing import Any

import pytest
from apiclient import Api
from factories import workflow_request
from pymongo import AsyncMongoClient, InsertOne, UpdateOne, monitoring
from pymongo.errors import BulkWriteError

from ewms_dev.factories import taskforce
from wms import schema
from wms.config import DEFAULT_OPENAPI_PATH
from wms.database.store import EMBEDDED_ID_KEY, LOOKUPS_MAX, Store


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


async def test_pages_are_cut_by_size_and_resume_after_the_last_item_sent(start_wms, make_token) -> None:  # type: ignore[no-untyped-def]
    server = await start_wms(USER_QUERY_MAX_BYTES="130")  # two items of {"taskforce_uuid": ...} (59 bytes each)
    api = Api(server.url, make_token("user", "dana"))
    created = [await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha", "test-beta"))) for _ in range(3)]
    expected = sorted(tf["taskforce_uuid"] for c in created for tf in c["taskforces"])
    body: dict = {"query": {}, "projection": ["taskforce_uuid"], "limit": 50}
    seen: list[str] = []
    while True:
        page = await api.ok("POST", "/v0/query/taskforces", body)
        items = page["taskforces"]
        assert 1 <= len(items) <= 2 and sum(len(json.dumps(i, separators=(",", ":"))) for i in items) <= 130
        seen += [tf["taskforce_uuid"] for tf in items]
        if page["next_after"] is None:
            break
        body["after"] = page["next_after"]
    assert sorted(seen) == expected  # every taskforce once: nothing skipped or repeated at a cut


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


async def test_a_lone_surrogate_in_a_refused_operator_gets_a_problem(api: Api) -> None:
    # the detail names the operator as given: JSON text with a lone surrogate escape, which UTF-8 cannot carry
    raw = b'{"query": {"$\\ud800": 1}}'
    headers = {"Content-Type": "application/json"}
    problem = await api.problem("POST", "/v0/query/taskforces", status=400, content=raw, headers=headers)
    assert "operator $\ud800 is not allowed" in problem["detail"]


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


async def test_keyset_pages_follow_id_order_through_updates(start_wms, make_token) -> None:  # type: ignore[no-untyped-def]
    server = await start_wms()
    store = server.wms.store
    assert store.id_key == EMBEDDED_ID_KEY  # the tests run on the embedded server: pages take its indexed path
    phases = ["condor-submit", "condor-complete", "condor-submit"]
    docs = [taskforce(f"TF-keyset-{i:02d}", "ap-keyset.test", phase=phases[i % 3]) for i in range(30)]
    await store.taskforces.insert_many(docs)
    expected = [d["taskforce_uuid"] async for d in store.taskforces.find(
        {"schedd": "ap-keyset.test", "phase": "condor-submit"}).sort("_id", 1)]  # fmt: skip
    assert len(expected) == 20
    api = Api(server.url, make_token("system-tms", "tms-keyset"))
    body: dict = {"query": {"schedd": "ap-keyset.test", "phase": "condor-submit"}, "limit": 3}
    seen: list[str] = []
    while True:
        page = await api.ok("POST", "/v0/query/taskforces", body)
        seen += [tf["taskforce_uuid"] for tf in page["taskforces"]]
        # rewriting documents between pages changes neither their order nor the cursor
        await store.taskforces.update_many({"schedd": "ap-keyset.test"}, {"$set": {"n_workers": len(seen)}})
        if page["next_after"] is None:
            break
        body["after"] = page["next_after"]
    assert seen == expected


async def test_keyset_pages_with_a_top_level_operator(api: Api) -> None:
    ids = [(await api.ok("POST", "/v0/workflows", workflow_request()))["workflow"]["workflow_id"] for _ in range(3)]
    body: dict = {"query": {"$or": [{"deactivated": {"$eq": None}}, {"deactivated_ts": {"$gte": 0}}]}, "limit": 2}
    seen: list[str] = []
    while True:  # the dashboard's "active and recent" selection, page after page
        page = await api.ok("POST", "/v0/query/workflows", body)
        seen += [w["workflow_id"] for w in page["workflows"]]
        if page["next_after"] is None:
            break
        body["after"] = page["next_after"]
    assert seen == ids


def test_exact_equalities_only_on_scalar_fields() -> None:
    store = Store(AsyncMongoClient("mongodb://127.0.0.1:1", connect=False), "x", schema.load(str(DEFAULT_OPENAPI_PATH)))
    query = {"schedd": "a", "priority": 3, "collector": None, "phase_change_log": "x", "worker_config.n_cores": 1,
             "owner": {"$in": ["a"]}, "$and": [{"phase": "p"}, {"cluster_id": 7}], "$or": [{"phase": "q"}]}  # fmt: skip
    assert store.exact(store.taskforces, query) == {
        "schedd": {"$eq": "a"}, "priority": {"$eq": 3}, "collector": None, "phase_change_log": "x",
        "worker_config.n_cores": 1, "owner": {"$in": ["a"]},
        "$and": [{"phase": {"$eq": "p"}}, {"cluster_id": {"$eq": 7}}], "$or": [{"phase": "q"}],
    }  # fmt: skip
    assert store.exact(store.task_directives, {"input_queues": "Q"}) == {"input_queues": "Q"}  # an array field


async def test_a_bare_value_still_matches_inside_an_array_field(api: Api) -> None:
    created = await api.ok("POST", "/v0/workflows", workflow_request(("test-beta",)))
    queue = created["task_directives"][0]["input_queues"][0]
    page = await api.ok("POST", "/v0/query/task-directives", {"query": {"input_queues": queue}})
    assert [d["task_id"] for d in page["task_directives"]] == [created["task_directives"][0]["task_id"]]


async def test_every_filter_the_store_sends_is_exact(mongo_uri: str) -> None:
    """Reads, writes and bulk writes alike reach the server with ``$eq`` on scalar fields (an index lookup on the
    embedded server, where a bare value on an update scans the collection), and still find what they should."""
    recorder = SentCommands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, event_listeners=[recorder])
    store = Store(client, "exact-filters-test", schema.load(str(DEFAULT_OPENAPI_PATH)))
    coll = store.taskforces
    try:
        await coll.insert_many([{"taskforce_uuid": f"TF-{n}", "phase": "p", "locations": ["a"]} for n in range(3)])
        await coll.update_one({"taskforce_uuid": "TF-0"}, {"$set": {"phase": "q"}})
        await coll.bulk_write([UpdateOne({"taskforce_uuid": "TF-1"}, {"$set": {"phase": "q"}})])
        moved = await coll.find_one_and_update({"taskforce_uuid": "TF-2", "phase": "p"}, {"$set": {"phase": "r"}})
        found = await coll.find({"phase": "q"}, {"_id": False, "taskforce_uuid": True}).to_list(None)
        await coll.delete_many({"phase": "q"})
        left = await coll.find({}, {"_id": False, "taskforce_uuid": True, "phase": True}).to_list(None)
    finally:
        await client.drop_database("exact-filters-test")
        await client.close()
    assert moved is not None and sorted(d["taskforce_uuid"] for d in found) == ["TF-0", "TF-1"]
    assert left == [{"taskforce_uuid": "TF-2", "phase": "r"}]
    filters = [f for c in recorder.sent for f in _filters(c)]
    assert {"taskforce_uuid": {"$eq": "TF-0"}} in filters and {"taskforce_uuid": {"$eq": "TF-1"}} in filters
    assert {"taskforce_uuid": {"$eq": "TF-2"}, "phase": {"$eq": "p"}} in filters
    assert {"phase": {"$eq": "q"}} in filters
    assert not any(isinstance(v, str) for f in filters for v in f.values())  # no bare value left


class SentCommands(monitoring.CommandListener):
    """The commands a client sent, as pymongo's command monitoring saw them."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _filters(command: dict[str, Any]) -> list[dict[str, Any]]:
    """The filters of a find, update, delete or findAndModify command."""
    if "filter" in command or "query" in command:
        return [command.get("filter") or command.get("query") or {}]
    return [op["q"] for key in ("updates", "deletes") for op in command.get(key, [])]


async def test_chunked_writes_try_every_request_and_raise_every_error(mongo_uri: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    store = Store(client, "write-each-test", schema.load(str(DEFAULT_OPENAPI_PATH)))
    await store.task_logs.create_index([("taskforce_uuid", 1), ("job_id", 1)], unique=True)
    try:
        await store.task_logs.insert_many([{"taskforce_uuid": "TF", "job_id": j} for j in ("1.3", "1.40")])
        # the two jobs already stored are taken by inserts (duplicates): chunks 1 and 2 each hold one
        requests = [InsertOne({"taskforce_uuid": "TF", "job_id": f"1.{p}"}) for p in range(60)]
        with pytest.raises(BulkWriteError) as caught:
            await store.write_each(store.task_logs, requests)
        assert [e["index"] for e in caught.value.details["writeErrors"]] == [3, 40]
        assert await store.task_logs.count_documents({}) == 60  # every other one was written
    finally:
        await client.drop_database("write-each-test")
        await client.close()


@pytest.mark.parametrize("n_values", [3, LOOKUPS_MAX + 5], ids=["one-query-per-value", "one-in-query"])
async def test_find_each_finds_every_value_once_by_lookups_or_one_in(mongo_uri: str, n_values: int) -> None:
    recorder = SentCommands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, event_listeners=[recorder])
    store = Store(client, f"find-each-test-{n_values}", schema.load(str(DEFAULT_OPENAPI_PATH)))
    coll = store.taskforces
    try:
        await coll.insert_many([{"taskforce_uuid": f"TF-{n}", "phase": "p"} for n in range(2 * LOOKUPS_MAX)])
        wanted = [f"TF-{n}" for n in range(n_values - 1)] + ["TF-0", "TF-missing"]  # a repeat and an unknown value
        recorder.sent.clear()
        found = await store.find_each(coll, "taskforce_uuid", wanted, {"_id": False, "taskforce_uuid": True})
    finally:
        await client.drop_database(f"find-each-test-{n_values}")
        await client.close()
    assert sorted(d["taskforce_uuid"] for d in found) == sorted(f"TF-{n}" for n in range(n_values - 1))
    finds = [c["filter"] for c in recorder.sent if "find" in c]
    unique = list(dict.fromkeys(wanted))
    if len(unique) > LOOKUPS_MAX:
        assert finds == [{"taskforce_uuid": {"$in": unique}}]
    else:
        assert finds == [{"taskforce_uuid": {"$eq": v}} for v in unique]
