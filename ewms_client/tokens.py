"""Bearer tokens for the WMS: a static token, or OAuth2 client credentials fetched from a token endpoint and
refreshed before they expire and whenever the WMS refuses one."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import httpx

from ewms_client.problem import WMSError

LOGGER = logging.getLogger(__name__)

REFRESH_MARGIN = 30.0  # seconds before expiry a token is replaced (at most half its lifetime)
DEFAULT_LIFETIME = 300.0  # assumed when the token endpoint does not say (``expires_in``)


class TokenSource(Protocol):
    """Where a connection gets its bearer token."""

    @property
    def refreshable(self) -> bool:
        """True when a refused token can be replaced by another one."""
        ...

    async def token(self, http: httpx.AsyncClient, rejected: str | None = None) -> str:
        """A token to send; never ``rejected`` (one the WMS refused) when another can be had."""
        ...


class StaticToken:
    """One token given by the user, used as it is."""

    refreshable = False

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self, http: httpx.AsyncClient, rejected: str | None = None) -> str:
        """The token."""
        return self._token


class ClientCredentials:
    """OAuth2 client credentials grant against ``token_url``; the token is cached until shortly before it expires."""

    refreshable = True

    def __init__(self, token_url: str, client_id: str, client_secret: str) -> None:
        self._url = token_url
        self._auth = (client_id, client_secret)
        self._token = ""
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self, http: httpx.AsyncClient, rejected: str | None = None) -> str:
        """The cached token, or a new one when there is none, it is about to expire, or it was ``rejected``
        (concurrent callers refused the same token fetch one new token)."""
        async with self._lock:
            if not self._token or self._token == rejected or time.monotonic() >= self._refresh_at:
                await self._fetch(http)
            return self._token

    async def _fetch(self, http: httpx.AsyncClient) -> None:
        response = await http.post(self._url, data={"grant_type": "client_credentials"}, auth=self._auth)
        if response.status_code != 200:
            raise WMSError.from_response(response, "token endpoint reply")
        try:
            body = response.json()
            token, lifetime = str(body["access_token"]), float(body.get("expires_in") or DEFAULT_LIFETIME)
        except (ValueError, KeyError, TypeError) as exc:
            raise WMSError.from_response(response, "token endpoint reply (no access_token)") from exc
        self._token = token
        self._refresh_at = time.monotonic() + lifetime - min(REFRESH_MARGIN, lifetime / 2)
        LOGGER.info("obtained a WMS access token from %s (valid %g s)", self._url, lifetime)
