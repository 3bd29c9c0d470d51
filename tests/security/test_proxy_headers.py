"""The client's address comes from proxy headers only when the operator says a proxy sets them: otherwise any client
could write any address into the access log."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

SPOOFED = "203.0.113.9"


@pytest.mark.parametrize(("trusted", "logged"), [("false", "127.0.0.1"), ("true", SPOOFED)])
async def test_forwarded_addresses_are_trusted_only_when_configured(
    start_wms: Callable[..., Awaitable[Any]], caplog: pytest.LogCaptureFixture, trusted: str, logged: str
) -> None:
    wms = await start_wms(TRUST_PROXY_HEADERS=trusted)
    with caplog.at_level(logging.INFO, logger="tornado.access"):
        async with httpx.AsyncClient(base_url=wms.url) as client:
            response = await client.get("/v0/", headers={"X-Forwarded-For": SPOOFED, "X-Real-Ip": SPOOFED})
    assert response.status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "tornado.access" and "GET /v0/ " in r.getMessage()]
    assert lines and f"({logged})" in lines[-1], lines
