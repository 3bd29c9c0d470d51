"""Async client for the WMS REST API routes a TMS uses (``/v0``, bearer token with role ``system-tms``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from tms.config import TMSConfig

LOGGER = logging.getLogger(__name__)

PREFIX = "/v0"
RETRY_STATUSES = frozenset({429, 502, 503, 504})


class WMSError(Exception):
    """The WMS answered with an error status (``detail`` from its RFC 7807 problem document)."""

    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {detail}")
        self.status = status
        self.detail = detail


class WMSUnavailable(Exception):
    """The WMS could not be reached, or kept failing, after all retries."""


class TokenSource:
    """Bearer tokens: a static token, or OAuth2 client credentials refreshed before they expire."""

    def __init__(
        self, static_token: str = "", token_url: str = "", client_id: str = "", client_secret: str = ""
    ) -> None:
        self._static = static_token
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._token = ""
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def refreshable(self) -> bool:
        """True when a refused token can be replaced by fetching a new one."""
        return not self._static

    async def get(self, http: httpx.AsyncClient, force_refresh: bool = False) -> str:
        """A valid token (fetched from the token URL when missing, expiring, or ``force_refresh``)."""
        if self._static:
            return self._static
        async with self._lock:
            if force_refresh or not self._token or time.time() > self._expires_at - 30:
                await self._fetch(http)
            return self._token

    async def _fetch(self, http: httpx.AsyncClient) -> None:
        resp = await http.post(
            self._token_url,
            data={"grant_type": "client_credentials"},
            auth=(self._client_id, self._client_secret),
        )
        if resp.status_code != 200:
            raise WMSError("POST", self._token_url, resp.status_code, f"token request refused: {resp.text[:300]}")
        body = resp.json()
        self._token = str(body["access_token"])
        self._expires_at = time.time() + float(body.get("expires_in", 300))
        LOGGER.info("obtained a WMS access token (valid %ss)", body.get("expires_in", "?"))


class WMSClient:
    """The TMS side of the WMS API: one method per route used."""

    def __init__(
        self,
        address: str,
        tokens: TokenSource,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=address.rstrip("/"), timeout=timeout, transport=transport)
        self._tokens = tokens
        self._retries = retries

    @classmethod
    def from_config(cls, config: TMSConfig) -> WMSClient:
        """Client for ``EWMS_ADDRESS`` with the configured credentials."""
        tokens = TokenSource(config.ewms_token, config.ewms_token_url, config.ewms_client_id, config.ewms_client_secret)
        return cls(config.ewms_address, tokens, config.http_timeout, config.http_retries)

    async def close(self) -> None:
        """Close connections."""
        await self._http.aclose()

    async def request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, params: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """One call with retries on transport errors and 429/5xx; returns ``(status, json)``; raises WMSError."""
        url = PREFIX + path
        delay = 0.5
        refreshed = False
        attempt = 0
        while True:
            try:
                token = await self._tokens.get(self._http)
                resp = await self._http.request(
                    method, url, json=body, params=params, headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.TransportError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 401 and not refreshed and self._tokens.refreshable:
                    refreshed = True
                    await self._tokens.get(self._http, force_refresh=True)
                    continue
                if resp.status_code not in RETRY_STATUSES and resp.status_code < 500:
                    return self._decode(method, url, resp)
                failure = f"HTTP {resp.status_code}: {_detail(resp)}"
            attempt += 1
            if attempt > self._retries:
                raise WMSUnavailable(f"{method} {url} failed after {attempt} attempts: {failure}")
            LOGGER.warning(
                "%s %s failed (%s); retry %d/%d in %.1fs", method, url, failure, attempt, self._retries, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 8.0)

    @staticmethod
    def _decode(method: str, url: str, resp: httpx.Response) -> tuple[int, Any]:
        if resp.status_code >= 400:
            raise WMSError(method, url, resp.status_code, _detail(resp))
        return resp.status_code, (resp.json() if resp.content else {})

    # -- starter ---------------------------------------------------------------------------------------------------

    async def get_pending_starter(self, schedd: str) -> dict[str, Any] | None:
        """Next taskforce to start, with its task directive and MQ profiles; ``None`` when there is none."""
        _, body = await self.request("GET", "/tms/pending-starter/taskforces", params={"schedd": schedd})
        return body if body else None

    async def get_taskforce(self, uuid: str) -> dict[str, Any]:
        """One taskforce."""
        _, body = await self.request("GET", f"/taskforces/{uuid}")
        return dict(body)

    async def confirm_condor_submit(
        self, uuid: str, cluster_id: int, n_workers: int, submit_dict: Mapping[str, str], job_event_log_fpath: str
    ) -> None:
        """Record a successful submission (409 -> WMSError: the taskforce is no longer pending-starter)."""
        body = {
            "cluster_id": cluster_id,
            "n_workers": n_workers,
            "submit_dict": dict(submit_dict),
            "job_event_log_fpath": job_event_log_fpath,
        }
        await self.request("POST", f"/tms/condor-submit/taskforces/{uuid}", body)

    async def fail_condor_submit(self, uuid: str, error: str) -> None:
        """Record a failed submission."""
        await self.request("POST", f"/tms/condor-submit/taskforces/{uuid}/failed", {"error": error})

    # -- stopper ---------------------------------------------------------------------------------------------------

    async def get_pending_stopper(self, schedd: str) -> dict[str, Any] | None:
        """Next taskforce whose jobs must be removed; ``None`` when there is none."""
        _, body = await self.request("GET", "/tms/pending-stopper/taskforces", params={"schedd": schedd})
        return body if body else None

    async def confirm_condor_rm(self, uuid: str) -> None:
        """Record that the taskforce's jobs were removed."""
        await self.request("POST", f"/tms/condor-rm/taskforces/{uuid}")

    async def fail_condor_rm(self, uuid: str, error: str) -> None:
        """Record a failed removal."""
        await self.request("POST", f"/tms/condor-rm/taskforces/{uuid}/failed", {"error": error})

    # -- watcher ---------------------------------------------------------------------------------------------------

    async def confirm_condor_complete(self, uuid: str, condor_complete_ts: int) -> None:
        """Record that the taskforce's cluster has left the queue."""
        await self.request(
            "POST", f"/tms/condor-complete/taskforces/{uuid}", {"condor_complete_ts": int(condor_complete_ts)}
        )

    async def send_statuses(
        self,
        compound_statuses: Mapping[str, Mapping[str, Mapping[str, int]]],
        top_task_errors: Mapping[str, Mapping[str, int]],
    ) -> list[dict[str, Any]]:
        """Bulk status report; returns the per-taskforce results (some may be ``failed`` on 207)."""
        body: dict[str, Any] = {}
        if compound_statuses:
            body["compound_statuses_by_taskforce"] = compound_statuses
        if top_task_errors:
            body["top_task_errors_by_taskforce"] = top_task_errors
        _, resp = await self.request("POST", "/tms/statuses/taskforces", body)
        return list(resp.get("results", [])) if isinstance(resp, dict) else []

    async def send_job_logs(self, uuid: str, jobs: Sequence[Mapping[str, Any]]) -> None:
        """Store the output tails of ended jobs of one taskforce (1..200 ``JobLog`` records; replaced per job id)."""
        await self.request("POST", f"/tms/logs/taskforces/{uuid}", {"jobs": list(jobs)})

    async def query_taskforces(self, query: Mapping[str, Any], projection: list[str]) -> list[dict[str, Any]]:
        """All taskforces matching ``query`` (every page)."""
        found: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            body: dict[str, Any] = {"query": dict(query), "projection": projection}
            if after:
                body["after"] = after
            _, resp = await self.request("POST", "/query/taskforces", body)
            found.extend(resp.get("taskforces", []))
            after = resp.get("next_after")
            if not after:
                return found


def _detail(resp: httpx.Response) -> str:
    """The human part of an error response (problem+json ``detail``, or the text)."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:500]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body.get("error") or body)[:500]
    return str(body)[:500]
