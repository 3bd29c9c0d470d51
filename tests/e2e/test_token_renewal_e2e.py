"""Issue 18 point 2 end to end: queue tokens live ``TTL`` seconds, and one real pilot, started by the local TMS,
works ten times longer. It renews its tokens at the WMS's token route with the credential the TMS gave it
(``EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL``/``_CREDENTIAL``); without that, its first publish after its token expired
would be refused (RabbitMQ 3.10: ``403 ACCESS_REFUSED ... token has expired``) and it would end in FatalError.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import mqclient
import pytest
from mqclient.broker_client_interface import MQClientException

from ewms_client import WMSClient
from ewms_dev.devstack import AUDIENCE, DevStack, stack_running
from ewms_dev.factories import WORKER_CONFIG
from wms.auth import Role, issue_token

pytestmark = pytest.mark.long_file

TTL = 3  # s: every queue token's lifetime
EVENTS = 30  # one pilot, one task at a time, each at least 1 s: the pilot runs at least 10 x TTL
LIVENESS = 180  # s: generous bound on the whole run (not a timing claim)
SLOW_COPY = """sh -c 'sleep 1; cp "$0" "$1"' {{INFILE}} {{OUTFILE}}"""
TOKEN_ROUTE = "/mqs/workflows/{workflow_id}/queues/{queue}/token"  # the metrics label: the route without its prefix


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    settings = {
        "MQ_DELETE_GRACE_SECONDS": "0",
        "BROKER_TOKEN_TTL_SECONDS": str(TTL),
        "BROKER_TOKEN_REFRESH_MARGIN_SECONDS": "1",
    }
    with stack_running(tmp_path_factory.mktemp("token-stack"), settings, max_local_jobs=2) as dev:
        yield dev


async def fresh_queues(wms: WMSClient, workflow_id: str) -> dict[str, dict[str, Any]]:
    """The public profiles, with tokens minted now (each lives only TTL s)."""
    return {p["alias"]: p for p in await wms.wait_for_public_queues(workflow_id, LIVENESS)}


def queue(profile: dict[str, Any], timeout: int) -> mqclient.Queue:
    return mqclient.Queue(
        "rabbitmq", address=profile["broker_address"], name=profile["mqid"], auth_token=profile["auth_token"],
        timeout=timeout,
    )  # fmt: skip


def token_route_calls(stack: DevStack) -> int:
    """Successful token renewals the WMS served (its Prometheus counter, read with an admin token)."""
    assert stack.state is not None
    keys = json.loads((Path(stack.state.data_dir) / "keys.json").read_text())
    admin = issue_token(keys["auth_key"], "root", Role.ADMIN, AUDIENCE)
    text = httpx.get(f"{stack.state.url}/metrics", headers={"Authorization": f"Bearer {admin}"}, timeout=30).text
    pattern = r'ewms_wms_requests_total\{method="POST",route="' + re.escape(TOKEN_ROUTE) + r'",status="200"\} (\S+)'
    found = re.search(pattern, text)
    return int(float(found.group(1))) if found else 0


async def test_a_pilot_outlives_its_tokens_ten_times(stack: DevStack, figures: dict[str, Any]) -> None:
    assert stack.state is not None
    request = {
        "public_queue_aliases": ["in", "out"],
        "tasks": [
            {
                "cluster_locations": ["local"],
                "input_queue_aliases": ["in"],
                "output_queue_aliases": ["out"],
                "task_image": "",
                "task_args": SLOW_COPY,
                "n_workers": 1,
                "worker_config": dict(WORKER_CONFIG),
            }
        ],
    }
    async with WMSClient(stack.state.url, stack.state.user_token) as wms:
        workflow_id = (await wms.submit_workflow(request))["workflow"]["workflow_id"]
        queues = await fresh_queues(wms, workflow_id)
        first_expiry = jwt.decode(queues["in"]["auth_token"], options={"verify_signature": False})["exp"]
        events = [f"event {i}" for i in range(EVENTS)]
        async with queue(queues["in"], 30).open_pub() as pub:
            for event in events:
                await pub.send(event)

        results: set[str] = set()
        deadline = time.monotonic() + LIVENESS
        while len(results) < EVENTS and time.monotonic() < deadline:  # each subscription with a token minted now
            try:
                async with queue((await fresh_queues(wms, workflow_id))["out"], 2).open_sub() as sub:
                    async for data in sub:
                        results.add(data)
                        if len(results) == EVENTS:
                            break
            except MQClientException:  # this reader's token expired mid-subscription: read on with a fresh one
                continue
        assert results == set(events)
        assert time.time() > first_expiry + 5 * TTL  # the premise: the pilot worked long after its first tokens died

        (taskforce,) = await wms.taskforces_of(workflow_id)  # one pilot did it all: none failed, none was added
        assert taskforce["n_workers"] == 1
        assert all("FatalError" not in by_status for by_status in taskforce["compound_statuses"].values())
        renewals = await asyncio.to_thread(token_route_calls, stack)
        assert renewals >= EVENTS // TTL  # it renewed, again and again
        figures.update(token_renewals=renewals, items_lost=EVENTS - len(results))
        await wms.finish(workflow_id)
