"""One connection to the WMS: sends a request with a bearer token, retries it by the :class:`RetryPolicy`,
replaces a refused token once, and turns every failure into a :class:`WMSError`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from ewms_client.problem import WMSError
from ewms_client.retry import IDEMPOTENT_METHODS, RetryPolicy
from ewms_client.tokens import StaticToken, TokenSource

LOGGER = logging.getLogger(__name__)


class Connection:
    """Calls the WMS at ``base_url`` (the server root, e.g. ``http://host:8080``; a trailing ``/v0`` is dropped)
    with tokens from ``tokens`` (a plain string is a static token)."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenSource | str,
        *,
        timeout: float = 30.0,
        policy: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # an address given with a version prefix (``/v0``, or upstream's ``/v1``: the same routes) is the server's root
        self.base_url = base_url.rstrip("/").removesuffix("/v0").removesuffix("/v1")
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        self.tokens: TokenSource = StaticToken(tokens) if isinstance(tokens, str) else tokens
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send one request and return its JSON body (``{}`` when empty); raise :class:`WMSError`.

        ``idempotent`` (default: by the method) tells the policy whether sending it twice is harmless. A 401 with a
        refreshable token source fetches a new token and sends the request once more.
        """
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        rejected: str | None = None
        attempt = 0
        while True:
            retry_after = None
            try:
                token = await self.tokens.token(self._http, rejected)
                response = await self._http.request(
                    method, path, json=body, params=params, headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.TransportError as exc:
                error = WMSError.from_transport(exc, f"the WMS at {self.base_url}", self.timeout)
                retry = self.policy.retries_failure(exc, idempotent)
            else:
                if response.is_success:
                    return _json(response)
                if response.status_code == 401 and rejected is None and self.tokens.refreshable:
                    LOGGER.info("%s %s: token refused (401); fetching a new one and trying again", method, path)
                    rejected = token
                    continue
                error = WMSError.from_response(response)
                retry = self.policy.retries_status(response.status_code, idempotent)
                retry_after = response.headers.get("Retry-After")
            if not retry or attempt >= self.policy.retries:
                raise error
            delay = self.policy.delay(attempt, retry_after)
            attempt += 1
            LOGGER.warning(
                "%s %s failed (%s); retry %d/%d in %.2f s", method, path, error, attempt, self.policy.retries, delay
            )
            await asyncio.sleep(delay)


def _json(response: httpx.Response) -> Any:
    """The JSON body of a successful answer ({} when empty)."""
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError as exc:
        raise WMSError.from_response(response) from exc
