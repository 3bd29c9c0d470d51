"""The retry policy, through a real connection to a scripted server: what is retried, how long it waits, when it
gives up."""

from __future__ import annotations

import logging

import pytest
from conftest import Script, ok, problem

from ewms_client import RetryPolicy, WMSClient, WMSError

FAST = RetryPolicy(retries=3, first_delay=0.01, max_delay=0.05)
HTML_502 = (502, {"Content-Type": "text/html"}, b"<h1>proxy says no</h1>")


async def test_reads_are_retried_on_502_503_504_then_answer(server: Script, caplog: pytest.LogCaptureFixture) -> None:
    unavailable = problem(503, "Service Unavailable", "db down")
    server.replies = [unavailable, HTML_502, (504, {}, b""), ok({"workflow_id": "W"})]
    caplog.set_level(logging.WARNING, "ewms_client")
    async with WMSClient(server.url, "t", policy=FAST) as wms:
        assert await wms.get_workflow("W") == {"workflow_id": "W"}
    assert [s[:2] for s in server.seen] == [("GET", "/v0/workflows/W")] * 4
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 3 and "(503 Service Unavailable: db down); retry 1/3" in retries[0]


async def test_gives_up_after_the_last_retry(server: Script) -> None:
    server.replies = [problem(503, "Service Unavailable", "db down")] * 5
    async with WMSClient(server.url, "t", policy=RetryPolicy(retries=2, first_delay=0.01)) as wms:
        with pytest.raises(WMSError) as info:
            await wms.get_taskforce("TF-1")
    assert len(server.seen) == 3 and (info.value.status, info.value.detail) == (503, "db down")
    assert info.value.is_unavailable


async def test_writes_are_not_retried_on_503(server: Script) -> None:
    server.replies = [problem(503, "Service Unavailable", "db down")]
    async with WMSClient(server.url + "/v0/", "t", policy=FAST) as wms:
        with pytest.raises(WMSError) as info:
            await wms.submit_workflow({})
    assert [s[:2] for s in server.seen] == [("POST", "/v0/workflows")]
    assert str(info.value) == "503 Service Unavailable: db down"


async def test_429_is_retried_for_any_request_after_retry_after(
    server: Script, caplog: pytest.LogCaptureFixture
) -> None:
    too_many = problem(429, "Too Many Requests", "slow down")
    server.replies = [(429, {**too_many[1], "Retry-After": "0.3"}, too_many[2]), ok({"workflow": {}})]
    caplog.set_level(logging.WARNING, "ewms_client")
    async with WMSClient(server.url, "t", policy=FAST) as wms:
        assert await wms.submit_workflow({}) == {"workflow": {}}
    assert len(server.seen) == 2
    assert any("retry 1/3 in 0.30 s" in r.getMessage() for r in caplog.records)  # the server's wait, not 0.01


async def test_other_refusals_are_never_retried(server: Script) -> None:
    server.replies = [problem(500, "Internal Server Error", "bug"), problem(404, "Not Found", "no such workflow")]
    async with WMSClient(server.url, "t", policy=FAST) as wms:
        for status in (500, 404):
            with pytest.raises(WMSError) as info:
                await wms.get_workflow("W")
            assert info.value.status == status
    assert len(server.seen) == 2


async def test_no_connection_is_retried_then_reported(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "ewms_client")
    async with WMSClient("http://127.0.0.1:9", "t", policy=RetryPolicy(retries=2, first_delay=0.01)) as wms:
        with pytest.raises(WMSError) as info:
            await wms.submit_workflow({})  # never sent: safe to retry even a creation
    assert (info.value.status, info.value.title, info.value.is_unavailable) == (None, "Unreachable", True)
    assert "cannot reach the WMS at http://127.0.0.1:9: ConnectError" in str(info.value)
    assert len([r for r in caplog.records if "retry" in r.getMessage()]) == 2


async def test_a_slow_answer_is_not_asked_again(server: Script) -> None:
    server.delay = 1.0
    async with WMSClient(server.url, "t", timeout=0.2, policy=FAST) as wms:
        with pytest.raises(WMSError) as info:
            await wms.get_workflow("W")
    assert info.value.title == "Timeout" and info.value.status is None
    assert len(server.seen) <= 1  # (the server may not have logged it yet; it never saw a second one)


def test_back_off_doubles_up_to_a_bound_and_honours_retry_after_up_to_a_bound() -> None:
    policy = RetryPolicy(first_delay=1, max_delay=4, max_retry_after=10)
    assert [policy.delay(n) for n in range(5)] == [1, 2, 4, 4, 4]
    assert policy.delay(0, "3") == 3 and policy.delay(0, "60") == 10 and policy.delay(2, "0") == 4
    assert policy.delay(0, "Wed, 21 Oct 2026 07:28:00 GMT") == 1  # a date: the back-off decides


async def test_an_address_with_either_version_prefix_is_the_servers_root(server: Script) -> None:
    server.replies = [problem(503, "Service Unavailable", "db down")] * 2
    for prefix in ("/v0", "/v1/"):
        async with WMSClient(server.url + prefix, "t", policy=FAST) as wms:
            with pytest.raises(WMSError):
                await wms.submit_workflow({})
    assert [s[:2] for s in server.seen] == [("POST", "/v0/workflows")] * 2
