"""``ewms query`` and ``WMSClient.query``: every page, projection, ``--max``."""

from __future__ import annotations

import json

from cli_support import RunCLI, workflow_request

from ewms_client import WMSClient


async def test_query_follows_every_page(ewms: RunCLI, client: WMSClient) -> None:
    created = [await client.submit_workflow(workflow_request()) for _ in range(3)]
    ids = [c["workflow"]["workflow_id"] for c in created]

    run = await ewms("query", "workflows", "--page-size", "1", "--json")
    assert run.code == 0, run.err
    assert [w["workflow_id"] for w in json.loads(run.out)] == ids and run.err == "3 results\n"

    run = await ewms("query", "workflows", "--page-size", "2", "--max", "2", "--json")
    assert [w["workflow_id"] for w in json.loads(run.out)] == ids[:2] and "--max reached" in run.err

    run = await ewms(
        "query", "taskforces", "--filter", json.dumps({"workflow_id": ids[1]}), "--projection", "phase,cluster_location"
    )
    header, *rows = run.out.splitlines()
    assert header.split() == ["PHASE", "CLUSTER_LOCATION"] and len(rows) == 2
    assert sorted(r.split()[1] for r in rows) == ["test-alpha", "test-beta"]

    uuids = [tf["taskforce_uuid"] async for tf in client.query("taskforces", {}, ["taskforce_uuid"], limit=1)]
    assert uuids == [tf["taskforce_uuid"] for c in created for tf in c["taskforces"]]


async def test_query_errors(ewms: RunCLI) -> None:
    run = await ewms("query", "workflows", "--filter", "[1]")
    assert run.code == 2 and run.err.startswith("error: --filter must be a JSON object")
    run = await ewms("query", "workflows", "--filter", "{nope")
    assert run.code == 2 and run.err.startswith("error: --filter is not valid JSON")
    run = await ewms("query", "taskforces", "--filter", '{"$where": "1"}')
    assert run.code == 1 and run.err.startswith("error: 400 Bad Request: ") and "not allowed" in run.err
