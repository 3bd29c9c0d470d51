"""Client for a remote, EWMS-compatible Message Queue Service over HTTP.

Routes (prefix ``/{MQS_API_VERSION}/mqs``): ``POST workflows/{id}/mq-group/reservation``, ``POST .../activation``,
``GET workflows/{id}/mq-group``, ``GET mq-profiles/{mqid}``, ``GET workflows/{id}/mq-profiles/public``, and
``POST .../deactivation`` where the MQS has it (upstream EWMS has no such route: queues then stay).

Connection errors and 5xx answers are retried with exponential back-off, then raise TryAgainLater; a 404 raises
MQSNotFound and any other 4xx raises MQSError.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
import jwt

from .config import MQSConfig
from .interface import MQProfile, MQSError, MQSNotFound, MQSNotSupported, QueueDepth, TryAgainLater

LOGGER = logging.getLogger(__name__)

TOKEN_RENEW_BEFORE_SECONDS = 60.0  # fetch a new client-credentials token when less than this is left
PARALLEL_PROFILE_GETS = 8


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        for key in ("detail", "message", "error", "title"):
            if body.get(key):
                return str(body[key])
    return str(body)[:300]


class _ClientCredentials:
    """OAuth2 client-credentials grant, with the access token cached until shortly before it expires."""

    def __init__(self, http: httpx.AsyncClient, token_url: str, client_id: str, client_secret: str) -> None:
        self._http = http
        self._form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
        self.token_url = token_url
        self._token = ""
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    def forget(self) -> None:
        """Drop the cached token (the MQS rejected it)."""
        self._renew_at = 0.0

    async def token(self) -> str:
        """A valid access token; raises httpx errors for the caller's retry loop, MQSError on a 4xx refusal."""
        async with self._lock:
            if time.time() < self._renew_at:
                return self._token
            response = await self._http.post(self.token_url, data=self._form)
            if response.status_code >= 500:
                response.raise_for_status()
            if response.status_code >= 400:
                raise MQSError(f"token endpoint {self.token_url} refused the client credentials: {_detail(response)}")
            try:
                body = response.json()
                self._token = str(body["access_token"])
            except (ValueError, KeyError, TypeError):
                raise MQSError(f"token endpoint {self.token_url} answered without an access_token") from None
            lifetime = body.get("expires_in")
            if lifetime is None:
                exp = jwt.decode(self._token, options={"verify_signature": False}).get("exp", time.time() + 300)
                lifetime = float(exp) - time.time()
            self._renew_at = time.time() + float(lifetime) - min(TOKEN_RENEW_BEFORE_SECONDS, float(lifetime) / 2)
            LOGGER.info("obtained an MQS access token from %s, valid %.0f s", self.token_url, float(lifetime))
            return self._token


class RemoteMQS:
    """The MQS interface over HTTP; ``retries`` retries after the first attempt, waiting ``backoff * 2**n``."""

    def __init__(self, config: MQSConfig, *, retries: int = 4, backoff: float = 0.5, timeout: float = 10.0) -> None:
        self.address = config.mqs_address.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.address, timeout=timeout)
        self._prefix = f"/{config.mqs_api_version}/mqs"
        self._retries, self._backoff = retries, backoff
        self._static_token = config.mqs_static_token
        self._credentials = (
            _ClientCredentials(self._http, config.mqs_token_url, config.mqs_client_id, config.mqs_client_secret)
            if config.mqs_token_url
            else None
        )
        self._profile_gets = asyncio.Semaphore(PARALLEL_PROFILE_GETS)

    # --- the MQSClient interface -------------------------------------------------------------------------

    async def reserve(self, workflow_id: str, queue_aliases: Sequence[str], public: Sequence[str]) -> list[MQProfile]:
        """``POST .../mq-group/reservation`` (idempotent on the MQS side)."""
        body = await self._call(
            "POST",
            self._workflow(workflow_id, "mq-group/reservation"),
            {"queue_aliases": list(queue_aliases), "public": list(public)},
        )
        return [MQProfile.from_dict(p) for p in body["mqprofiles"]]

    async def activate(self, workflow_id: str, priority: int) -> list[MQProfile]:
        """``POST .../mq-group/activation``; an answer carrying ``try_again_later`` raises TryAgainLater."""
        body = await self._call(
            "POST", self._workflow(workflow_id, "mq-group/activation"), {"criteria": {"priority": priority}}
        )
        if body.get("try_again_later"):
            raise TryAgainLater(f"the MQS at {self.address} asked to retry the activation of {workflow_id} later")
        return [MQProfile.from_dict(p) for p in body["mqprofiles"]]

    async def get_profiles(self, mqids: Sequence[str]) -> list[MQProfile]:
        """One ``GET mq-profiles/{mqid}`` per queue, a few at a time (the MQS has no bulk route)."""

        async def one(mqid: str) -> MQProfile:
            async with self._profile_gets:
                return MQProfile.from_dict(
                    await self._call("GET", f"{self._prefix}/mq-profiles/{quote(mqid, safe='')}")
                )

        return list(await asyncio.gather(*(one(mqid) for mqid in mqids)))

    async def get_public_profiles(self, workflow_id: str) -> list[MQProfile]:
        """``GET .../mq-profiles/public``."""
        body = await self._call("GET", self._workflow(workflow_id, "mq-profiles/public"))
        return [MQProfile.from_dict(p) for p in body["mqprofiles"]]

    async def renew_token(self, workflow_id: str, mqid: str) -> MQProfile:
        """``GET mq-profiles/{mqid}``: the remote MQS refreshes its tokens itself (it has no minting route)."""
        (profile,) = await self.get_profiles([mqid])
        if profile.workflow_id != workflow_id:
            raise MQSNotFound(f"workflow {workflow_id} has no queue {mqid}")
        return profile

    async def queue_depths(self, workflow_id: str) -> list[QueueDepth]:
        """Not offered: an EWMS-compatible MQS has no route for queue depths (upstream's management URL is a TODO)."""
        raise MQSNotSupported(f"the MQS at {self.address} reports no queue depths (EWMS MQS has no such route)")

    async def queue_depths_of(self, workflow_ids: Sequence[str]) -> dict[str, list[QueueDepth]]:
        """Not offered either (see :meth:`queue_depths`)."""
        raise MQSNotSupported(f"the MQS at {self.address} reports no queue depths (EWMS MQS has no such route)")

    async def forget(self, workflow_id: str) -> list[dict[str, Any]] | None:
        """A remote MQS keeps its own records: nothing to delete here."""
        return []

    async def deactivate(self, workflow_id: str) -> None:
        """``POST .../mq-group/deactivation``; an MQS without that route (404/405) leaves the queues in place."""
        response = await self._request("POST", self._workflow(workflow_id, "mq-group/deactivation"))
        if response.status_code in (404, 405):
            await self._call("GET", self._workflow(workflow_id, "mq-group"))  # MQSNotFound for an unknown workflow
            LOGGER.warning(
                "the MQS at %s does not support deactivation (HTTP %d): queues of workflow %s stay until it "
                "removes them",
                self.address,
                response.status_code,
                workflow_id,
            )
            return
        self._check(response)
        LOGGER.info("deactivated the queues of workflow %s at the MQS %s", workflow_id, self.address)

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    # --- lifecycle hooks shared with the embedded MQS -------------------------------------------------------

    async def ensure_indexes(self) -> None:
        """Nothing to do: the remote MQS owns its database."""

    async def run_housekeeping(self, stop: asyncio.Event) -> None:
        """Nothing to do until ``stop``: the remote MQS deletes queues and refreshes tokens itself."""
        await stop.wait()

    # --- HTTP -------------------------------------------------------------------------------------------------

    def _workflow(self, workflow_id: str, rest: str) -> str:
        return f"{self._prefix}/workflows/{quote(workflow_id, safe='')}/{rest}"

    async def _call(self, method: str, path: str, json: Any = None) -> Any:
        return self._check(await self._request(method, path, json)).json()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code == 404:
            raise MQSNotFound(f"{response.request.method} {response.request.url.path}: {_detail(response)}")
        if response.status_code >= 400:
            raise MQSError(
                f"the MQS answered {response.status_code} to {response.request.method} "
                f"{response.request.url.path}: {_detail(response)}"
            )
        return response

    async def _headers(self) -> dict[str, str]:
        if self._credentials is not None:
            return {"Authorization": f"Bearer {await self._credentials.token()}"}
        if self._static_token:
            return {"Authorization": f"Bearer {self._static_token}"}
        return {}

    async def _request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        """Send, retrying connection errors and 5xx answers (token endpoint included); returns any other answer."""
        reauthenticated = False
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, path, json=json, headers=await self._headers())
            except httpx.HTTPError as exc:  # transport errors, and 5xx from the token endpoint
                failure = f"{exc!r}"
            else:
                if response.status_code == 401 and self._credentials is not None and not reauthenticated:
                    LOGGER.info("the MQS rejected the cached access token; fetching a new one")
                    self._credentials.forget()
                    reauthenticated = True
                    continue
                if response.status_code < 500:
                    return response
                failure = f"HTTP {response.status_code}: {_detail(response)}"
            if attempt >= self._retries:
                raise TryAgainLater(f"{method} {self.address}{path} failed {attempt + 1} time(s), last: {failure}")
            delay = self._backoff * 2**attempt
            attempt += 1
            LOGGER.warning(
                "%s %s%s failed (%s); retry %d/%d in %.1f s",
                method,
                self.address,
                path,
                failure,
                attempt,
                self._retries,
                delay,
            )
            await asyncio.sleep(delay)
