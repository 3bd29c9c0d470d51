"""Signing in as a person: the OAuth2 device authorization grant (RFC 8628) and the tokens it saves.

:func:`device_login` asks the provider for a user code, shows where to enter it, polls the token endpoint until the
user approved, and returns a :class:`SavedLogin`. :class:`SavedLogin` is a token source kept in a file (mode 0600):
it sends the access token and, when that is about to expire or the WMS refuses it, gets a new one with the refresh
token and saves it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from ewms_client.problem import WMSError
from ewms_client.tokens import DEFAULT_LIFETIME, REFRESH_MARGIN

LOGGER = logging.getLogger(__name__)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SLOW_DOWN_STEP = 5.0  # seconds added to the polling interval on ``slow_down`` (RFC 8628 section 3.5)


class LoginError(Exception):
    """The sign-in did not complete (denied, expired, or the provider answered something unusable)."""


@dataclass(frozen=True)
class Provider:
    """Where the OAuth2 provider takes device authorizations and hands out tokens, and this client's id."""

    device_authorization_endpoint: str
    token_endpoint: str
    client_id: str
    scope: str = "openid offline_access"

    @classmethod
    async def discover(cls, http: httpx.AsyncClient, issuer: str, client_id: str, scope: str) -> Provider:
        """Read both endpoints from the issuer's OpenID Connect discovery document."""
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        body = _json(await http.get(url), "discovery document")
        try:
            return cls(str(body["device_authorization_endpoint"]), str(body["token_endpoint"]), client_id, scope)
        except KeyError as exc:
            raise LoginError(f"{url} names no {exc.args[0]}: the provider may not offer the device flow") from exc


@dataclass
class Tokens:
    """What is saved after a sign-in."""

    token_endpoint: str
    client_id: str
    access_token: str
    refresh_token: str | None
    expires_at: float  # epoch seconds
    refresh_at: float  # epoch seconds: shortly before expiry (at most half the lifetime before)


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise LoginError(f"unexpected {what} from {response.request.url} ({response.status_code})")
    if response.status_code >= 400 and "error" not in body:
        raise LoginError(f"{what} refused by {response.request.url} ({response.status_code})")
    return body


def _tokens(body: dict[str, Any], provider_url: str, client_id: str, refresh: str | None = None) -> Tokens:
    if "access_token" not in body:
        raise LoginError(f"no access_token from {provider_url}: {body.get('error', 'unknown error')}")
    lifetime = float(body.get("expires_in") or DEFAULT_LIFETIME)
    now = time.time()
    return Tokens(
        token_endpoint=provider_url,
        client_id=client_id,
        access_token=str(body["access_token"]),
        refresh_token=body.get("refresh_token") or refresh,
        expires_at=now + lifetime,
        refresh_at=now + lifetime - min(REFRESH_MARGIN, lifetime / 2),
    )


async def device_login(
    http: httpx.AsyncClient, provider: Provider, path: Path, show: Callable[[str, str, str | None], None]
) -> SavedLogin:
    """Run the device flow; ``show(verification_uri, user_code, verification_uri_complete)`` tells the user where
    to go. The tokens are saved to ``path``."""
    start = _json(
        await http.post(
            provider.device_authorization_endpoint, data={"client_id": provider.client_id, "scope": provider.scope}
        ),
        "device authorization",
    )
    if "error" in start:
        raise LoginError(f"device authorization refused: {start['error']} {start.get('error_description', '')}")
    show(str(start["verification_uri"]), str(start["user_code"]), start.get("verification_uri_complete"))
    interval = float(start.get("interval") or 5)
    deadline = time.monotonic() + float(start.get("expires_in") or 600)
    form = {"grant_type": DEVICE_GRANT, "device_code": str(start["device_code"]), "client_id": provider.client_id}
    while time.monotonic() < deadline:
        await asyncio.sleep(interval)
        body = _json(await http.post(provider.token_endpoint, data=form), "token answer")
        error = body.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += SLOW_DOWN_STEP
            continue
        if error:
            raise LoginError(f"sign-in failed: {error} {body.get('error_description', '')}".rstrip())
        login = SavedLogin(path, _tokens(body, provider.token_endpoint, provider.client_id))
        login.save()
        return login
    raise LoginError("the code expired before the sign-in was approved; run `ewms login` again")


class SavedLogin:
    """A token source backed by the saved sign-in; refreshed with the refresh token shortly before it expires and
    when the WMS refuses it."""

    refreshable = True

    def __init__(self, path: Path, tokens: Tokens) -> None:
        self.path = path
        self.tokens = tokens
        self._lock = asyncio.Lock()

    @classmethod
    def load(cls, path: Path) -> SavedLogin | None:
        """The sign-in saved at ``path``, or None when there is none (or it is unreadable)."""
        try:
            return cls(path, Tokens(**json.loads(path.read_text())))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            LOGGER.warning("ignoring the saved sign-in %s: %s", path, exc)
            return None

    def save(self) -> None:
        """Write the tokens to the file, readable by its owner only (written whole, then renamed)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(asdict(self.tokens)))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    async def token(self, http: httpx.AsyncClient, rejected: str | None = None) -> str:
        """The access token; refreshed first when it is about to expire or was ``rejected``."""
        async with self._lock:
            if self.tokens.access_token == rejected or time.time() >= self.tokens.refresh_at:
                await self._refresh(http)
            return self.tokens.access_token

    async def _refresh(self, http: httpx.AsyncClient) -> None:
        tokens = self.tokens
        if not tokens.refresh_token:
            raise WMSError(401, "Unauthorized", "the saved sign-in expired and cannot be refreshed; run `ewms login`")
        form = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token, "client_id": tokens.client_id}
        response = await http.post(tokens.token_endpoint, data=form)
        if response.status_code != 200:
            raise WMSError(
                401, "Unauthorized", f"refreshing the saved sign-in failed ({response.status_code}); run `ewms login`"
            )
        try:
            body = _json(response, "refresh answer")
            self.tokens = _tokens(body, tokens.token_endpoint, tokens.client_id, tokens.refresh_token)
        except LoginError as exc:
            raise WMSError(401, "Unauthorized", f"refreshing the saved sign-in failed: {exc}") from exc
        self.save()
        LOGGER.info("refreshed the saved sign-in (%s)", self.path)
