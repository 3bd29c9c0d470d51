"""Status reports are never dropped (issue 18.1), against the real WMS: thousands of taskforces read again after a
restart go out in reports under the WMS's body limit (or split on a 413), a refused report is kept and sent again,
and a token that expires mid-run is replaced."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from apiclient import Api
from factories import one_task_workflow
from test_tms_with_real_wms import SCHEDD, tms_config

from ewms_client import ClientCredentials, RetryPolicy
from ewms_wire.job_event_log import JobEventLogWriter
from tms.config import TMSConfig
from tms.watcher.loop import Watcher
from tms.wms_client import WMSClient
from wms.auth import Role

RUNNING = {"RUNNING": {"null": 1}}
STATUSES = "/v0/tms/statuses/taskforces"


class Recorder(httpx.AsyncHTTPTransport):
    """A real transport that notes every status report (body size, answer) and can refuse the next ones itself."""

    def __init__(self, refuse: list[int] | None = None) -> None:
        super().__init__()
        self.refuse = refuse or []
        self.reports: list[tuple[int, int]] = []  # body bytes, status

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != STATUSES:
            return await super().handle_async_request(request)
        size = len(await request.aread())
        if self.refuse:
            status = self.refuse.pop(0)
            response = httpx.Response(status, json={"status": status, "title": "Refused", "detail": "by the test"})
        else:
            response = await super().handle_async_request(request)
        self.reports.append((size, response.status_code))
        return response


async def taskforces_in_log(wms: Any, api: Api, log: Path, n: int) -> list[str]:
    """``n`` submitted taskforces (copies of a real one) whose single job, cluster 1000 + i, writes to ``log``."""
    created = await api.ok("POST", "/v0/workflows", one_task_workflow("sleep", 1))
    template = await wms.store.taskforces.find_one({"taskforce_uuid": created["taskforces"][0]["taskforce_uuid"]})
    del template["_id"]
    uuids = [f"TF-0-{i:08x}-00000000-00000000" for i in range(n)]
    docs = [
        {**template, "taskforce_uuid": uuid, "phase": "condor-submit", "cluster_id": 1000 + i, "n_workers": 1}
        | {"schedd": SCHEDD, "job_event_log_fpath": str(log)}
        for i, uuid in enumerate(uuids)
    ]
    await wms.store.taskforces.insert_many(docs)
    return uuids


def jobs_running(log: Path, clusters: range) -> None:
    writer = JobEventLogWriter(log)
    for cluster in clusters:
        writer.submit(cluster, 0)
        writer.execute(cluster, 0)


async def statuses_in_wms(wms: Any, uuids: list[str]) -> dict[str, Any]:
    found = wms.store.taskforces.find({"taskforce_uuid": {"$in": uuids}}, {"taskforce_uuid": 1, "compound_statuses": 1})
    return {doc["taskforce_uuid"]: doc["compound_statuses"] async for doc in found}


def each(uuids: list[str], statuses: dict[str, Any]) -> dict[str, Any]:
    return {uuid: statuses for uuid in uuids}


async def caught_up(watcher: Watcher) -> None:
    """Passes until the logs are read to their end, then one more (what a running watcher does)."""
    while await watcher.run_once():
        pass


async def run_after_restart(
    start_wms: Callable[..., Awaitable[Any]],
    make_token: Any,
    make_config: Callable[..., TMSConfig],
    n: int,
    wms_limit: int,
    **settings: Any,
) -> list[tuple[int, int]]:
    """``n`` running taskforces read by a fresh TMS (as after a restart) and reported to a real WMS refusing bodies
    over ``wms_limit`` bytes; checks every status arrived and returns the status reports (body size, answer)."""
    started = await start_wms(MAX_BODY_BYTES=str(wms_limit), DAEMON_POLL_SECONDS="5")  # (daemons not under test)
    api = Api(started.url, make_token(Role.USER, "alice"))
    config = tms_config(make_config, started, make_token, http_timeout=120.0, **settings)  # a loaded machine
    log = config.job_event_log_dir / "restart.tms.jel"
    uuids = await taskforces_in_log(started.wms, api, log, n)
    jobs_running(log, range(1000, 1000 + n))
    transport = Recorder()
    wms = WMSClient(started.url, config.ewms_token, timeout=120.0, policy=RetryPolicy(retries=0), transport=transport)
    watcher = Watcher(config, wms)
    try:
        await caught_up(watcher)
    finally:
        await wms.close()
    assert await statuses_in_wms(started.wms, uuids) == each(uuids, RUNNING)
    assert watcher.tracker.last_compound(uuids[-1]) == RUNNING
    return transport.reports


@pytest.mark.timeout(900)  # the embedded database takes a few ms per update: 5,000 take long on a loaded machine
async def test_5000_taskforces_after_a_restart_reach_the_wms_in_reports_under_its_limit(
    start_wms: Callable[..., Awaitable[Any]],
    make_token: Any,
    make_config: Callable[..., TMSConfig],
    figures: dict[str, Any],
) -> None:
    reports = await run_after_restart(
        start_wms, make_token, make_config, 5000, 32 * 1024, status_report_max_bytes=24 * 1024
    )
    assert len(reports) >= 10  # ~400 KB of statuses
    assert all(status == 200 and size <= 24 * 1024 for size, status in reports), reports
    figures.update(statuses_recovered=5000, status_reports=len(reports), reports_refused=0, items_lost=0)


async def test_a_report_over_the_wms_limit_is_split(
    start_wms: Callable[..., Awaitable[Any]],
    make_token: Any,
    make_config: Callable[..., TMSConfig],
    figures: dict[str, Any],
) -> None:
    reports = await run_after_restart(start_wms, make_token, make_config, 300, 4096)  # the TMS's default: over
    assert reports[0][1] == 413 and reports[0][0] > 4096
    accepted = [size for size, status in reports if status == 200]
    assert len(accepted) >= 6 and max(accepted) <= 4096, reports
    refused = sum(status != 200 for _, status in reports)
    figures.update(faults_injected=1, reports_refused=refused, statuses_recovered=300, items_lost=0)


async def test_a_refused_report_is_kept_and_sent_next_pass(
    api: Api,
    wms_server: Any,
    make_token: Any,
    make_config: Callable[..., TMSConfig],
    caplog: pytest.LogCaptureFixture,
    figures: dict[str, Any],
) -> None:
    config = tms_config(make_config, wms_server, make_token)
    log = config.job_event_log_dir / "refused.tms.jel"
    uuids = await taskforces_in_log(wms_server.wms, api, log, 20)
    jobs_running(log, range(1000, 1020))
    transport = Recorder(refuse=[401, 503])  # an expired static token (fixed by the operator), then an outage
    wms = WMSClient(wms_server.url, config.ewms_token, policy=RetryPolicy(retries=0), transport=transport)
    watcher = Watcher(config, wms)
    try:
        with caplog.at_level(logging.WARNING):
            await caught_up(watcher)
            assert await statuses_in_wms(wms_server.wms, uuids) == each(uuids, {})
            await watcher.run_once()
        assert "not accepted (sent again next pass): 401 Refused" in caplog.text
        assert await statuses_in_wms(wms_server.wms, uuids) == each(uuids, {})
        await watcher.run_once()  # nothing changed in the log: the kept report goes out
    finally:
        await wms.close()
    assert [status for _, status in transport.reports] == [401, 503, 200]
    assert await statuses_in_wms(wms_server.wms, uuids) == each(uuids, RUNNING)
    figures.update(faults_injected=2, reports_refused=2, statuses_recovered=len(uuids), items_lost=0)


class TokenEndpoint(tornado.web.RequestHandler):
    """Client credentials for the TMS: real WMS tokens; the first one lives two seconds while claiming an hour."""

    def initialize(self, make_token: Any, issued: list[str]) -> None:
        self.make_token, self.issued = make_token, issued

    def post(self) -> None:
        ttl = 2 if not self.issued else 3600
        self.issued.append(self.make_token(Role.TMS, "tms", ttl=ttl))
        self.finish({"access_token": self.issued[-1], "expires_in": 3600, "token_type": "Bearer"})


async def test_a_token_that_expires_mid_run_is_replaced(
    api: Api, wms_server: Any, make_token: Any, make_config: Callable[..., TMSConfig], figures: dict[str, Any]
) -> None:
    issued: list[str] = []
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(
        tornado.web.Application([(r"/token", TokenEndpoint, {"make_token": make_token, "issued": issued})])
    )
    server.add_sockets(sockets)
    token_url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/token"
    config = tms_config(make_config, wms_server, make_token)
    log = config.job_event_log_dir / "expiry.tms.jel"
    uuids = await taskforces_in_log(wms_server.wms, api, log, 40)
    jobs_running(log, range(1000, 1020))
    wms = WMSClient(wms_server.url, ClientCredentials(token_url, "tms", "secret"), policy=RetryPolicy(retries=0))
    watcher = Watcher(config, wms)
    try:
        await caught_up(watcher)
        assert len(issued) in (1, 2)  # 2: a loaded machine's first catch-up outlasted the first token
        first = await statuses_in_wms(wms_server.wms, uuids)
        assert first == {**each(uuids[:20], RUNNING), **each(uuids[20:], {})}
        expired = {"Authorization": f"Bearer {issued[0]}"}
        async with httpx.AsyncClient(base_url=wms_server.url, headers=expired) as c:
            for _ in range(200):  # liveness bound: the token expires within two seconds
                if (await c.get("/v0/taskforces/" + uuids[0])).status_code == 401:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the first token never expired")
        jobs_running(log, range(1020, 1040))
        await caught_up(watcher)
    finally:
        await wms.close()
        server.stop()
    assert len(issued) == 2  # refused once, replaced once
    assert await statuses_in_wms(wms_server.wms, uuids) == each(uuids, RUNNING)
    figures.update(faults_injected=1, token_renewals=1, statuses_recovered=len(uuids), items_lost=0)
