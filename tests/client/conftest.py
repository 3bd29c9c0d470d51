"""A small real HTTP server (tornado, in the test loop) that answers from a script, and a real OAuth2 token endpoint."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

Reply = tuple[int, dict[str, str], bytes]  # status, headers, body


def problem(status: int, title: str, detail: str, **extra: object) -> Reply:
    """An RFC 7807 problem reply."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return status, {"Content-Type": "application/problem+json"}, json.dumps(body).encode()


def ok(body: object) -> Reply:
    """A 200 JSON reply."""
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


@dataclass
class Script:
    """What the server answers (the next scripted reply, else ``ok({})``), which tokens it accepts (None: any), and
    what it saw."""

    replies: list[Reply] = field(default_factory=list)
    valid_tokens: set[str] | None = None
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, token
    issued: list[str] = field(default_factory=list)  # tokens handed out by the token endpoint
    expires_in: float = 3600
    delay: float = 0.0  # seconds before each API answer
    url: str = ""


class ApiHandler(tornado.web.RequestHandler):
    def initialize(self, script: Script) -> None:
        self.script = script

    async def _answer(self) -> None:
        if self.script.delay:
            await asyncio.sleep(self.script.delay)
        token = self.request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.script.seen.append((self.request.method or "", self.request.path, token))
        if self.script.valid_tokens is not None and token not in self.script.valid_tokens:
            status, headers, body = problem(401, "Unauthorized", "token expired or invalid")
        else:
            status, headers, body = self.script.replies.pop(0) if self.script.replies else ok({})
        self.set_status(status)
        for name, value in headers.items():
            self.set_header(name, value)
        self.finish(body)

    get = post = _answer


class TokenHandler(tornado.web.RequestHandler):
    """``POST /token``: the client credentials grant for client ``tms-client`` / secret ``s3cret``."""

    def initialize(self, script: Script) -> None:
        self.script = script

    def post(self) -> None:
        user, _, secret = base64.b64decode(self.request.headers["Authorization"].split()[1]).decode().partition(":")
        if self.get_body_argument("grant_type") != "client_credentials" or (user, secret) != ("tms-client", "s3cret"):
            self.set_status(401)
            self.finish({"error": "invalid_client"})
            return
        token = f"token-{len(self.script.issued) + 1}"
        self.script.issued.append(token)
        self.finish({"access_token": token, "expires_in": self.script.expires_in, "token_type": "Bearer"})


@pytest.fixture
async def server() -> AsyncIterator[Script]:
    """A scripted API under ``/v0/`` and a token endpoint at ``/token``, on a free port."""
    script = Script()
    args = {"script": script}
    app = tornado.web.Application([(r"/token", TokenHandler, args), (r"/v0/.*", ApiHandler, args)])
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    http = tornado.httpserver.HTTPServer(app)
    http.add_sockets(sockets)
    script.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    yield script
    http.stop()
    await http.close_all_connections()
