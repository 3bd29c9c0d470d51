"""The WMS client: auth (static token, client credentials), retries, error details, pagination."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from tms_fakes import FakeWMS, make_taskforce

from tms.wms_client import TokenSource, WMSClient, WMSError, WMSUnavailable


class TokenHandler(tornado.web.RequestHandler):
    issued: list[str] = []

    def post(self) -> None:
        user, _, secret = base64.b64decode(self.request.headers["Authorization"].split()[1]).decode().partition(":")
        assert self.get_body_argument("grant_type") == "client_credentials"
        if (user, secret) != ("tms-client", "s3cret"):
            self.set_status(401)
            self.finish({"error": "invalid_client"})
            return
        token = f"token-{len(self.issued) + 1}"
        self.issued.append(token)
        self.finish({"access_token": token, "expires_in": 3600, "token_type": "Bearer"})


class ProtectedHandler(tornado.web.RequestHandler):
    valid = {"token-2"}  # the first token is "revoked": the client must fetch another one

    def get(self, uuid: str) -> None:
        token = self.request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.valid:
            self.set_status(401)
            self.finish({"status": 401, "detail": "token expired"})
            return
        self.finish({"taskforce_uuid": "TF-1", "phase": "condor-submit"})


@pytest.fixture
async def auth_server() -> AsyncIterator[str]:
    app = tornado.web.Application([(r"/token", TokenHandler), (r"/v0/taskforces/([\w-]+)", ProtectedHandler)])
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    server.stop()


async def test_client_credentials_and_refresh_on_401(auth_server: str) -> None:
    TokenHandler.issued.clear()
    tokens = TokenSource(token_url=f"{auth_server}/token", client_id="tms-client", client_secret="s3cret")
    client = WMSClient(auth_server, tokens, retries=0)
    assert (await client.get_taskforce("TF-1"))["phase"] == "condor-submit"
    assert TokenHandler.issued == ["token-1", "token-2"]
    await client.get_taskforce("TF-1")
    assert len(TokenHandler.issued) == 2  # cached while valid
    await client.close()


async def test_bad_client_secret(auth_server: str) -> None:
    tokens = TokenSource(token_url=f"{auth_server}/token", client_id="tms-client", client_secret="wrong")
    client = WMSClient(auth_server, tokens, retries=0)
    with pytest.raises(WMSError, match="token request refused"):
        await client.get_taskforce("TF-1")
    await client.close()


async def test_retries_errors_and_pages(fake_wms: FakeWMS, make_config) -> None:
    client = WMSClient.from_config(make_config(fake_wms.url, http_retries=2))
    for n in range(5):
        fake_wms.add(make_taskforce(f"TF-{n}", job_event_log_fpath="/logs/a.tms.jel"))
    fake_wms.fail_next.extend([503, 502])  # retried, then fine
    found = await client.query_taskforces({"job_event_log_fpath": "/logs/a.tms.jel"}, ["taskforce_uuid"])
    assert [tf["taskforce_uuid"] for tf in found] == [f"TF-{n}" for n in range(5)]  # three pages of two
    assert len(fake_wms.calls_to("/query/taskforces")) == 5
    with pytest.raises(WMSError) as err:
        await client.get_taskforce("TF-nope")
    assert err.value.status == 404 and err.value.detail == "no taskforce found with uuid TF-nope"
    fake_wms.fail_next.extend([503, 503, 503])
    with pytest.raises(WMSUnavailable, match="after 3 attempts"):
        await client.get_pending_starter("ap.test")
    await client.close()


async def test_unreachable_wms() -> None:
    client = WMSClient("http://127.0.0.1:9", TokenSource("t"), retries=1)
    with pytest.raises(WMSUnavailable, match="ConnectError"):
        await client.get_pending_stopper("ap.test")
    await client.close()


async def test_statuses_body_holds_only_given_parts() -> None:
    # the body shape is checked against the real WMS in test_tms_with_real_wms; here: empty parts are left out
    sent: list[dict] = []

    class Recorder(WMSClient):
        async def request(self, method: str, path: str, body: Any = None, params: Any = None) -> tuple[int, Any]:
            sent.append(json.loads(json.dumps(body)))
            return 200, {"results": []}

    client = Recorder("http://x", TokenSource("t"))
    await client.send_statuses({"TF-1": {"IDLE": {"null": 1}}}, {})
    await client.close()
    assert sent == [{"compound_statuses_by_taskforce": {"TF-1": {"IDLE": {"null": 1}}}}]
