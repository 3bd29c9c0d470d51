"""``ewms login``: the OAuth2 device flow against a small real provider served here (tornado), the saved tokens
(0600), their use when no token is given, and their refresh when the WMS refuses one."""

from __future__ import annotations

import json
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from cli_support import RunCLI

from wms.auth import Role

CLIENT_ID = "ewms-cli"


class Provider:
    """A device-flow provider: one pending poll, then a slow_down, then the tokens (the first access token as told:
    a real token, or one the WMS refuses); refreshes hand out good tokens."""

    def __init__(self, good_token: Callable[[], str], first_token: str | None = None) -> None:
        self.good_token = good_token
        self.first_token = first_token
        self.polls = 0
        self.refreshes = 0
        self.url = ""

    def app(self) -> tornado.web.Application:
        provider = self

        class Discovery(tornado.web.RequestHandler):
            def get(self) -> None:
                self.write({
                    "issuer": provider.url,
                    "device_authorization_endpoint": f"{provider.url}/device",
                    "token_endpoint": f"{provider.url}/token",
                })  # fmt: skip

        class Device(tornado.web.RequestHandler):
            def post(self) -> None:
                assert self.get_body_argument("client_id") == CLIENT_ID
                self.write({
                    "device_code": "dev-code-1", "user_code": "WDJB-MJHT", "verification_uri": f"{provider.url}/go",
                    "verification_uri_complete": f"{provider.url}/go?code=WDJB-MJHT", "expires_in": 60,
                    "interval": 0.05,
                })  # fmt: skip

        class Token(tornado.web.RequestHandler):
            def post(self) -> None:
                grant = self.get_body_argument("grant_type")
                if grant == "refresh_token":
                    assert self.get_body_argument("refresh_token") == "refresh-1"
                    provider.refreshes += 1
                    self.write({"access_token": provider.good_token(), "expires_in": 3600, "token_type": "Bearer"})
                    return
                assert grant == "urn:ietf:params:oauth:grant-type:device_code"
                assert self.get_body_argument("device_code") == "dev-code-1"
                provider.polls += 1
                if provider.polls <= 2:
                    self.set_status(400)
                    self.write({"error": "authorization_pending" if provider.polls == 1 else "slow_down"})
                    return
                access = provider.first_token or provider.good_token()
                self.write({"access_token": access, "refresh_token": "refresh-1", "expires_in": 3600})

        return tornado.web.Application(
            [(r"/.well-known/openid-configuration", Discovery), (r"/device", Device), (r"/token", Token)]
        )


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Provider], str]]:
    servers: list[tornado.httpserver.HTTPServer] = []

    def _serve(provider: Provider) -> str:
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server = tornado.httpserver.HTTPServer(provider.app())
        server.add_sockets(sockets)
        servers.append(server)
        provider.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        return provider.url

    yield _serve
    for server in servers:
        server.stop()


def saved_login(path: Path) -> dict[str, Any] | None:
    """The saved sign-in, None if there is none."""
    return json.loads(path.read_text()) if path.exists() else None


def write(path: Path, saved: dict[str, Any]) -> None:
    path.write_text(json.dumps(saved))


def private(path: Path) -> bool:
    """Readable and writable by its owner only."""
    return stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.fixture
def login_file(tmp_path: Path) -> Path:
    return tmp_path / "login.json"  # beside EWMS_CONFIG (tests/cli/conftest.py)


async def test_device_flow_then_commands_use_the_saved_token(
    ewms: RunCLI, serve: Any, make_token: Any, login_file: Path, wms_server: Any
) -> None:
    url = serve(Provider(lambda: make_token(Role.USER, "alice")))
    run = await ewms("login", "--issuer", url, "--client-id", CLIENT_ID, connect=False)
    assert run.code == 0, run.err
    assert run.err.startswith(f"To sign in, open {url}/go and enter the code WDJB-MJHT\n(or open {url}/go?code=")
    assert run.out == f"signed in; tokens saved to {login_file}\n"
    assert private(login_file)
    saved = saved_login(login_file)
    assert saved is not None and saved["refresh_token"] == "refresh-1" and saved["token_endpoint"] == f"{url}/token"

    run = await ewms("--url", wms_server.url, "query", "workflows", connect=False)  # no --token, no EWMS_TOKEN
    assert run.code == 0 and run.err == "0 results\n", run.err

    run = await ewms("logout", connect=False)
    assert run.code == 0 and saved_login(login_file) is None
    run = await ewms("--url", wms_server.url, "query", "workflows", connect=False)
    assert run.code == 2 and "or run `ewms login`" in run.err


async def test_a_refused_token_is_refreshed_and_saved(
    ewms: RunCLI, serve: Any, make_token: Any, login_file: Path, wms_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = Provider(lambda: make_token(Role.USER, "alice"), first_token="not-a-valid-token")
    url = serve(provider)
    monkeypatch.setenv("EWMS_OIDC_DEVICE_ENDPOINT", f"{url}/device")
    monkeypatch.setenv("EWMS_OIDC_TOKEN_ENDPOINT", f"{url}/token")
    monkeypatch.setenv("EWMS_OIDC_CLIENT_ID", CLIENT_ID)
    run = await ewms("login", connect=False)
    assert run.code == 0, run.err
    assert (saved_login(login_file) or {})["access_token"] == "not-a-valid-token"

    run = await ewms("--url", wms_server.url, "query", "workflows", connect=False)
    assert run.code == 0, run.err
    assert provider.refreshes == 1
    saved = saved_login(login_file)
    assert saved is not None and saved["access_token"] != "not-a-valid-token" and saved["refresh_token"] == "refresh-1"
    assert private(login_file)

    write(login_file, {**saved, "refresh_at": 0})  # due for renewal: refreshed before it is sent
    run = await ewms("--url", wms_server.url, "query", "workflows", connect=False)
    assert run.code == 0 and provider.refreshes == 2, run.err
    assert (saved_login(login_file) or {})["refresh_at"] > 0


async def test_login_needs_a_provider(ewms: RunCLI) -> None:
    run = await ewms("login", connect=False)
    assert run.code == 2 and run.err.startswith("error: no OAuth2 client id")
    run = await ewms("login", "--client-id", CLIENT_ID, connect=False)
    assert run.code == 2 and run.err.startswith("error: no identity provider: pass --issuer")
