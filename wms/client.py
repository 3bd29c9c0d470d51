"""An async Python client for the WMS REST API (``/v0``, bearer token).

Every error becomes a :class:`WMSError` built from the server's RFC 7807 problem details. Read-only calls (GETs
and queries) are retried with back-off when the server cannot be connected to or answers 503.

Example::

    async with WMSClient("http://localhost:8080", token) as wms:
        created = await wms.submit_workflow(request)
        profiles = await wms.wait_for_public_queues(created["workflow"]["workflow_id"], timeout=60)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

QUERY_KINDS = ("workflows", "task-directives", "taskforces")
RETRIES = 3  # extra attempts of a read-only call
FIRST_RETRY_DELAY = 0.25  # seconds, doubled on each retry
MAX_RETRY_AFTER = 5.0  # longest server-requested (Retry-After) wait honoured


class WMSError(Exception):
    """The WMS refused a call (``status`` 4xx/5xx) or could not be reached (``status`` None)."""

    def __init__(self, status: int | None, title: str, detail: str, errors: list[str] | None = None) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = list(errors or [])
        super().__init__(str(self))

    def __str__(self) -> str:
        """``404 Not Found: detail``, then one line per validation message (not repeated in the detail)."""
        detail = self.detail
        joined = "; ".join(self.errors)
        if joined and detail.endswith(joined):
            detail = detail.removesuffix(joined).rstrip(": ") or detail
        head = detail if self.status is None else f"{self.status} {self.title}: {detail}"
        return "\n".join([head, *(f"  - {e}" for e in self.errors)])

    @property
    def is_unavailable(self) -> bool:
        """True for network failures and 5xx answers (worth trying again later), False for refusals (4xx)."""
        return self.status is None or self.status >= 500

    @classmethod
    def from_response(cls, response: httpx.Response) -> WMSError:
        """Build from a problem-details body, or from the status line and text of any other reply."""
        status = response.status_code
        phrase = response.reason_phrase or _phrase(status)
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "detail" in body:
            errors = body.get("errors")
            return cls(
                int(body.get("status", status)),
                str(body.get("title", phrase)),
                str(body["detail"]),
                [str(e) for e in errors] if isinstance(errors, list) else None,
            )
        text = response.text.strip()[:300] or "(empty body)"
        return cls(status, phrase, f"unexpected reply from {response.request.url}: {text}")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class WMSClient:
    """Calls the WMS at ``base_url`` (the server root, e.g. ``http://host:8080``) with a bearer ``token``."""

    def __init__(self, base_url: str, token: str, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/v0")
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    async def __aenter__(self) -> WMSClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # ---- transport -----------------------------------------------------------------------------------------
    async def _call(self, method: str, path: str, body: Any = None, *, read_only: bool = False) -> Any:
        """Send one request and return its JSON body; ``read_only`` calls are retried on outages."""
        attempts = 1 + (RETRIES if read_only else 0)
        for attempt in range(attempts):
            delay = FIRST_RETRY_DELAY * 2**attempt
            try:
                response = await self._http.request(method, path, json=body)
            except httpx.TimeoutException as exc:
                error = WMSError(None, "Timeout", f"no answer from the WMS at {self.base_url} within {self.timeout} s")
                if not isinstance(exc, httpx.ConnectTimeout):  # the server got the request but is slow: do not pile on
                    raise error from exc
                error.__cause__ = exc
            except httpx.TransportError as exc:
                error = WMSError(None, "Unreachable", f"cannot reach the WMS at {self.base_url}: {exc}")
                error.__cause__ = exc
            else:
                if response.is_success:
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise WMSError.from_response(response) from exc
                error = WMSError.from_response(response)
                if response.status_code != 503:
                    raise error
                delay = max(delay, _retry_after(response))
            if attempt + 1 < attempts:
                await asyncio.sleep(delay)
        raise error

    # ---- workflows -----------------------------------------------------------------------------------------
    async def submit_workflow(self, request: dict[str, Any]) -> dict[str, Any]:
        """Create a workflow; the response has ``workflow``, ``task_directives`` and ``taskforces``."""
        result: dict[str, Any] = await self._call("POST", "/v0/workflows", request)
        return result

    async def get_workflow(self, workflow_id: str) -> dict[str, Any]:
        """One workflow."""
        result: dict[str, Any] = await self._call("GET", f"/v0/workflows/{_q(workflow_id)}", read_only=True)
        return result

    async def abort(self, workflow_id: str) -> dict[str, Any]:
        """Abort a workflow; ``n_taskforces`` tells how many taskforces this call sent to stop."""
        result: dict[str, Any] = await self._call("POST", f"/v0/workflows/{_q(workflow_id)}/actions/abort", {})
        return result

    async def finish(self, workflow_id: str) -> dict[str, Any]:
        """Mark a workflow finished; ``n_taskforces`` tells how many taskforces this call sent to stop."""
        result: dict[str, Any] = await self._call("POST", f"/v0/workflows/{_q(workflow_id)}/actions/finished", {})
        return result

    # ---- tasks and taskforces ------------------------------------------------------------------------------
    async def get_task_directive(self, task_id: str) -> dict[str, Any]:
        """One task directive."""
        result: dict[str, Any] = await self._call("GET", f"/v0/task-directives/{_q(task_id)}", read_only=True)
        return result

    async def get_taskforce(self, taskforce_uuid: str) -> dict[str, Any]:
        """One taskforce."""
        result: dict[str, Any] = await self._call("GET", f"/v0/taskforces/{_q(taskforce_uuid)}", read_only=True)
        return result

    async def add_workers(self, task_id: str, location: str, n_workers: int) -> dict[str, Any]:
        """Create one more taskforce of ``n_workers`` for the task at ``location``; the new taskforce."""
        body = {"cluster_location": location, "n_workers": n_workers}
        path = f"/v0/task-directives/{_q(task_id)}/actions/add-workers"
        result: dict[str, Any] = await self._call("POST", path, body)
        return result

    async def taskforces_of(self, workflow_id: str) -> list[dict[str, Any]]:
        """Every taskforce of a workflow, oldest first."""
        return [tf async for tf in self.query("taskforces", {"workflow_id": workflow_id})]

    # ---- queues --------------------------------------------------------------------------------------------
    async def public_queues(self, workflow_id: str) -> list[dict[str, Any]]:
        """The workflow's public queue profiles (``auth_token`` is null until ``is_activated``)."""
        path = f"/v0/mqs/workflows/{_q(workflow_id)}/mq-profiles/public"
        result = await self._call("GET", path, read_only=True)
        profiles: list[dict[str, Any]] = result["mqprofiles"]
        return profiles

    async def wait_for_public_queues(
        self,
        workflow_id: str,
        timeout: float,  # noqa: ASYNC109 (a polling deadline, not a cancellation scope)
        interval: float = 0.5,
    ) -> list[dict[str, Any]]:
        """Poll until every public queue is activated; raise :class:`TimeoutError` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            profiles = await self.public_queues(workflow_id)
            if all(p["is_activated"] for p in profiles):
                return profiles
            left = deadline - time.monotonic()
            if left <= 0:
                waiting = ", ".join(p["alias"] for p in profiles if not p["is_activated"])
                raise TimeoutError(f"queues of {workflow_id} not activated within {timeout:g} s: {waiting}")
            await asyncio.sleep(min(interval, left))

    # ---- queries -------------------------------------------------------------------------------------------
    async def query(
        self,
        kind: str,
        query: dict[str, Any],
        projection: list[str] | None = None,
        limit: int | None = None,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Yield every object of ``kind`` (workflows, task-directives, taskforces) matching the MongoDB filter
        ``query``, following ``next_after`` across pages of at most ``limit`` objects (server default if None)."""
        if kind not in QUERY_KINDS:
            raise ValueError(f"unknown query kind {kind!r} (one of: {', '.join(QUERY_KINDS)})")
        body: dict[str, Any] = {"query": query}
        if projection:
            body["projection"] = projection
        if limit is not None:
            body["limit"] = limit
        key = kind.replace("-", "_")
        while True:
            page = await self._call("POST", f"/v0/query/{kind}", body, read_only=True)
            for item in page[key]:
                yield item
            if page["next_after"] is None:
                return
            body["after"] = page["next_after"]


def _q(segment: str) -> str:
    """Quote an id for use as one path segment."""
    return quote(segment, safe="")


def _retry_after(response: httpx.Response) -> float:
    """Seconds the server asked us to wait (capped), or 0."""
    try:
        return min(float(response.headers.get("Retry-After", 0)), MAX_RETRY_AFTER)
    except ValueError:
        return 0.0
