"""Token sources: a static token as given; OAuth2 client credentials from a real token endpoint, refreshed before
they expire and when the WMS refuses one (then the request is sent once more)."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Script

from ewms_client import ClientCredentials, RetryPolicy, WMSClient, WMSError


def credentials(server: Script, secret: str = "s3cret") -> ClientCredentials:
    return ClientCredentials(f"{server.url}/token", "tms-client", secret)


async def test_a_static_token_is_sent_and_a_refusal_reported(server: Script) -> None:
    server.valid_tokens = {"good"}
    async with WMSClient(server.url, "good") as wms:
        await wms.get_workflow("W")
    async with WMSClient(server.url, "stale") as wms:
        with pytest.raises(WMSError) as info:
            await wms.get_workflow("W")
    assert info.value.status == 401 and [s[2] for s in server.seen] == ["good", "stale"]


async def test_client_credentials_are_cached_while_valid(server: Script) -> None:
    async with WMSClient(server.url, credentials(server)) as wms:
        for _ in range(3):
            await wms.get_workflow("W")
    assert server.issued == ["token-1"] and {s[2] for s in server.seen} == {"token-1"}


async def test_a_token_is_refreshed_before_it_expires(server: Script) -> None:
    server.expires_in = 1  # replaced after half its lifetime
    async with WMSClient(server.url, credentials(server)) as wms:
        await wms.get_workflow("W")
        await asyncio.sleep(0.6)
        await wms.get_workflow("W")
    assert [s[2] for s in server.seen] == ["token-1", "token-2"]


async def test_a_refused_token_is_replaced_and_the_request_sent_again(server: Script) -> None:
    server.valid_tokens = {"token-2"}  # token-1 was revoked (or expired early)
    async with WMSClient(server.url, credentials(server)) as wms:
        await wms.submit_workflow({})  # even a creation: a 401 means it was not processed
        await wms.get_workflow("W")
    assert [s[:3:2] for s in server.seen] == [("POST", "token-1"), ("POST", "token-2"), ("GET", "token-2")]


async def test_only_one_new_token_for_concurrent_refusals(server: Script) -> None:
    server.valid_tokens = {"token-2"}
    async with WMSClient(server.url, credentials(server)) as wms:
        await asyncio.gather(*(wms.get_workflow(f"W{n}") for n in range(5)))
    assert server.issued == ["token-1", "token-2"]


async def test_a_new_token_refused_too_is_reported_once(server: Script) -> None:
    server.valid_tokens = set()
    async with WMSClient(server.url, credentials(server), policy=RetryPolicy(retries=3)) as wms:
        with pytest.raises(WMSError) as info:
            await wms.get_workflow("W")
    assert info.value.status == 401 and len(server.seen) == 2 and server.issued == ["token-1", "token-2"]


async def test_wrong_client_secret(server: Script) -> None:
    async with WMSClient(server.url, credentials(server, "wrong")) as wms:
        with pytest.raises(WMSError) as info:
            await wms.get_workflow("W")
    assert info.value.status == 401 and "unexpected token endpoint reply" in info.value.detail
    assert "invalid_client" in info.value.detail and server.seen == []


async def test_an_unreachable_token_endpoint_is_an_outage() -> None:
    tokens = ClientCredentials("http://127.0.0.1:9/token", "tms-client", "s3cret")
    async with WMSClient("http://127.0.0.1:9", tokens, policy=RetryPolicy(retries=1, first_delay=0.01)) as wms:
        with pytest.raises(WMSError) as info:
            await wms.get_workflow("W")
    assert info.value.status is None and info.value.is_unavailable
