"""The remote MQS client against a small in-test HTTP MQS (tornado) with a client-credentials token endpoint."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from ewms_dev.processes import free_port
from mqs_client import MQSConfig, MQSError, MQSNotFound, MQSNotSupported, RemoteMQS, TryAgainLater

CLIENT_ID, CLIENT_SECRET = "wms", "s3cret"
WF = r"/v0/mqs/workflows/(?P<wid>[\w-]+)"


class FakeMQS:
    """State of the in-test MQS, and the faults it is told to produce."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, Any]] = {}
        self.profiles: dict[str, dict[str, Any]] = {}
        self.tokens: set[str] = set()
        self.token_ttl = 3600
        self.calls: Counter[str] = Counter()
        self.fail: dict[str, list[int]] = {}  # route -> statuses to answer before serving it
        self.try_again_later = False
        self.static_token = ""

    def issue_token(self) -> str:
        token = f"tok-{uuid.uuid4().hex[:8]}"
        self.tokens.add(token)
        return token


class Base(tornado.web.RequestHandler):
    route = ""

    def initialize(self, fake: FakeMQS) -> None:
        self.fake = fake

    def prepare(self) -> None:
        self.fake.calls[self.route] += 1
        failures = self.fake.fail.get(self.route)
        if failures:
            raise tornado.web.HTTPError(failures.pop(0))
        token = self.request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.fake.tokens and not (self.fake.static_token and token == self.fake.static_token):
            raise tornado.web.HTTPError(401)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish({"code": status_code, "error": self._reason})

    def group(self, wid: str) -> dict[str, Any]:
        if wid not in self.fake.groups:
            raise tornado.web.HTTPError(404, reason=f"MQGroup not found: {wid}")
        return self.fake.groups[wid]

    def group_profiles(self, wid: str) -> list[dict[str, Any]]:
        return [p for p in self.fake.profiles.values() if p["workflow_id"] == wid]


class Token(tornado.web.RequestHandler):
    def initialize(self, fake: FakeMQS) -> None:
        self.fake = fake

    def post(self) -> None:
        self.fake.calls["token"] += 1
        form = {k: self.get_body_argument(k, "") for k in ("grant_type", "client_id", "client_secret")}
        if form != {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}:
            self.set_status(401)
            self.finish({"error": "invalid_client"})
            return
        self.finish({"access_token": self.fake.issue_token(), "expires_in": self.fake.token_ttl})


class Reservation(Base):
    route = "reservation"

    def post(self, wid: str) -> None:
        body = json.loads(self.request.body)
        if not body.get("queue_aliases"):
            raise tornado.web.HTTPError(400, reason="queue_aliases must not be empty")
        if wid not in self.fake.groups:
            self.fake.groups[wid] = {"workflow_id": wid, "timestamp": time.time(), "criteria": None}
            for alias in body["queue_aliases"]:
                mqid = "a" + uuid.uuid4().hex[:20]
                self.fake.profiles[mqid] = {
                    "mqid": mqid,
                    "workflow_id": wid,
                    "timestamp": time.time(),
                    "alias": alias,
                    "is_public": alias in body.get("public", []),
                    "is_activated": False,
                    "auth_token": None,
                    "broker_type": "rabbitmq",
                    "broker_address": "user@broker.example",
                }
        self.finish({"mqgroup": self.fake.groups[wid], "mqprofiles": self.group_profiles(wid)})


class Activation(Base):
    route = "activation"

    def post(self, wid: str) -> None:
        group = self.group(wid)
        if self.fake.try_again_later:
            self.finish({"try_again_later": True})
            return
        group["criteria"] = json.loads(self.request.body)["criteria"]
        for profile in self.group_profiles(wid):
            profile.update(is_activated=True, auth_token=f"jwt-for-{profile['mqid']}")
        self.finish({"mqgroup": group, "mqprofiles": self.group_profiles(wid)})


class Group(Base):
    route = "mq-group"

    def get(self, wid: str) -> None:
        self.finish(self.group(wid))


class Profile(Base):
    route = "mq-profile"

    def get(self, mqid: str) -> None:
        if mqid not in self.fake.profiles:
            raise tornado.web.HTTPError(404, reason=f"MQProfile not found: {mqid}")
        self.finish(self.fake.profiles[mqid])


class Public(Base):
    route = "public"

    def get(self, wid: str) -> None:
        self.group(wid)
        self.finish({"mqprofiles": [p for p in self.group_profiles(wid) if p["is_public"]]})


class Deactivation(Base):
    route = "deactivation"

    def post(self, wid: str) -> None:
        self.group(wid)["deactivated"] = True
        self.finish({})


class NoPost(Base):
    """A route that exists but has no POST: tornado answers 405."""

    route = "deactivation"

    def get(self, wid: str) -> None:
        self.finish({})


def make_app(fake: FakeMQS, deactivation: str) -> tornado.web.Application:
    """``deactivation``: ``supported``, ``missing`` (404) or ``no-post`` (405)."""
    args = {"fake": fake}
    routes: list[Any] = [
        (r"/token", Token, args),
        (WF + r"/mq-group/reservation", Reservation, args),
        (WF + r"/mq-group/activation", Activation, args),
        (WF + r"/mq-group", Group, args),
        (r"/v0/mqs/mq-profiles/(?P<mqid>[\w-]+)", Profile, args),
        (WF + r"/mq-profiles/public", Public, args),
    ]
    if deactivation != "missing":
        routes.append((WF + r"/mq-group/deactivation", Deactivation if deactivation == "supported" else NoPost, args))
    return tornado.web.Application(routes)


@pytest.fixture
async def fake_mqs(request: pytest.FixtureRequest) -> AsyncIterator[tuple[FakeMQS, str]]:
    """The fake MQS on a free port, and its base URL (``deactivation`` mode from the test's parameter)."""
    fake = FakeMQS()
    server = tornado.httpserver.HTTPServer(make_app(fake, getattr(request, "param", "supported")))
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    yield fake, f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    server.stop()
    await server.close_all_connections()


def client(url: str, **settings: Any) -> RemoteMQS:
    """A remote client with client credentials and quick retries."""
    config = {
        "mqs_address": url,
        "mqs_token_url": f"{url}/token",
        "mqs_client_id": CLIENT_ID,
        "mqs_client_secret": CLIENT_SECRET,
    } | settings
    return RemoteMQS(MQSConfig(**config), retries=2, backoff=0.01)


async def test_reserve_activate_and_read_profiles(fake_mqs: tuple[FakeMQS, str]) -> None:
    fake, url = fake_mqs
    mqs = client(url)
    reserved = await mqs.reserve("WF-1", ["in", "out"], ["in"])
    assert [(p.alias, p.is_public, p.is_activated) for p in reserved] == [("in", True, False), ("out", False, False)]
    assert await mqs.reserve("WF-1", ["in", "out"], ["in"]) == reserved
    assert [p.to_dict() for p in await mqs.get_public_profiles("WF-1")] == [reserved[0].to_dict()]

    active = await mqs.activate("WF-1", priority=7)
    assert all(p.is_activated and p.auth_token == f"jwt-for-{p.mqid}" for p in active)
    assert fake.groups["WF-1"]["criteria"] == {"priority": 7}
    mqids = [p.mqid for p in reversed(active)]
    assert [p.mqid for p in await mqs.get_profiles(mqids)] == mqids
    assert fake.calls["mq-profile"] == 2
    assert fake.calls["token"] == 1  # cached across every call
    await mqs.close()


async def test_server_errors_and_connection_errors_are_retried(fake_mqs: tuple[FakeMQS, str]) -> None:
    fake, url = fake_mqs
    mqs = client(url)
    await mqs.reserve("WF-2", ["in"], [])
    fake.fail["activation"] = [500]
    (active,) = await mqs.activate("WF-2", priority=1)
    assert active.is_activated and fake.calls["activation"] == 2

    fake.fail["public"] = [503, 502, 500]
    with pytest.raises(TryAgainLater, match="failed 3 time"):
        await mqs.get_public_profiles("WF-2")
    await mqs.close()

    nowhere = client(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TryAgainLater, match="ConnectError"):
        await nowhere.get_public_profiles("WF-2")
    await nowhere.close()


async def test_client_errors_are_clear_and_not_retried(fake_mqs: tuple[FakeMQS, str]) -> None:
    fake, url = fake_mqs
    mqs = client(url)
    with pytest.raises(MQSNotFound, match="MQGroup not found: WF-none"):
        await mqs.get_public_profiles("WF-none")
    with pytest.raises(MQSNotFound, match="MQProfile not found"):
        await mqs.get_profiles(["a0000000000000000000"])
    with pytest.raises(MQSNotFound):
        await mqs.activate("WF-none", priority=1)
    with pytest.raises(MQSError, match=r"400.*queue_aliases must not be empty") as refused:
        await mqs.reserve("WF-3", [], [])
    assert not isinstance(refused.value, MQSNotFound)
    assert fake.calls["reservation"] == 1
    await mqs.close()


async def test_try_again_later_answer(fake_mqs: tuple[FakeMQS, str]) -> None:
    fake, url = fake_mqs
    mqs = client(url)
    await mqs.reserve("WF-4", ["in"], [])
    fake.try_again_later = True
    with pytest.raises(TryAgainLater, match="WF-4"):
        await mqs.activate("WF-4", priority=1)
    await mqs.close()


async def test_access_token_renewed_near_expiry_and_after_rejection(fake_mqs: tuple[FakeMQS, str]) -> None:
    fake, url = fake_mqs
    fake.token_ttl = 1  # renewed half-way through its life
    mqs = client(url)
    await mqs.reserve("WF-5", ["in"], ["in"])
    await mqs.get_public_profiles("WF-5")
    assert fake.calls["token"] == 1
    await asyncio.sleep(0.6)
    await mqs.get_public_profiles("WF-5")
    assert fake.calls["token"] == 2

    fake.token_ttl = 3600
    fake.tokens.clear()  # the MQS revokes every token: the client re-authenticates once
    await mqs.get_public_profiles("WF-5")
    assert fake.calls["token"] == 3
    await mqs.close()

    wrong = client(url, mqs_client_secret="guess")
    with pytest.raises(MQSError, match="refused the client credentials"):
        await wrong.get_public_profiles("WF-5")
    await wrong.close()


async def test_static_token(fake_mqs: tuple[FakeMQS, str]) -> None:
    fake, url = fake_mqs
    fake.static_token = "static-secret"
    mqs = RemoteMQS(MQSConfig(mqs_address=url, mqs_static_token="static-secret"), retries=0)
    await mqs.reserve("WF-6", ["in"], [])
    assert fake.calls["token"] == 0
    await mqs.close()
    wrong = RemoteMQS(MQSConfig(mqs_address=url, mqs_static_token="stale"), retries=0)
    with pytest.raises(MQSError, match="401"):
        await wrong.reserve("WF-6", ["in"], [])
    await wrong.close()


async def test_deactivation_supported(fake_mqs: tuple[FakeMQS, str]) -> None:
    fake, url = fake_mqs
    mqs = client(url)
    await mqs.reserve("WF-7", ["in"], [])
    await mqs.deactivate("WF-7")
    assert fake.groups["WF-7"]["deactivated"]
    with pytest.raises(MQSNotFound):
        await mqs.deactivate("WF-none")
    await mqs.close()


@pytest.mark.parametrize("fake_mqs", ["missing", "no-post"], indirect=True)
async def test_deactivation_unsupported_is_a_warning(
    fake_mqs: tuple[FakeMQS, str], caplog: pytest.LogCaptureFixture
) -> None:
    _fake, url = fake_mqs
    mqs = client(url)
    await mqs.reserve("WF-8", ["in"], [])
    with caplog.at_level(logging.WARNING, logger="mqs_client.remote"):
        await mqs.deactivate("WF-8")
    assert "does not support deactivation" in caplog.text
    with pytest.raises(MQSNotFound):
        await mqs.deactivate("WF-none")
    await mqs.close()


async def test_lifecycle_hooks_are_no_ops(fake_mqs: tuple[FakeMQS, str]) -> None:
    _fake, url = fake_mqs
    mqs = client(url)
    await mqs.ensure_indexes()
    stop = asyncio.Event()
    task = asyncio.create_task(mqs.run_housekeeping(stop))
    await asyncio.sleep(0.05)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 1)
    await mqs.close()


async def test_queue_depths_are_not_supported(fake_mqs: tuple[FakeMQS, str]) -> None:
    fake, url = fake_mqs
    mqs = client(url)
    with pytest.raises(MQSNotSupported, match="no queue depths"):
        await mqs.queue_depths("WF-1")
    assert sum(fake.calls.values()) == 0  # nothing asked of an MQS that has no such route
    await mqs.close()
