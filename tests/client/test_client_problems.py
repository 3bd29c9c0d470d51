"""Every failure is one :class:`WMSError` carrying the RFC 7807 problem details (or what the reply held instead)."""

from __future__ import annotations

import pytest
from conftest import Reply, Script, ok, problem

from ewms_client import WMSClient, WMSError


async def test_problem_details_are_kept(server: Script) -> None:
    server.replies = [
        problem(
            400,
            "Bad Request",
            "invalid workflow: 'tasks' is a required property",
            type="https://ewms.example/problems/invalid",
            errors=["'tasks' is a required property"],
        )
    ]
    async with WMSClient(server.url, "t") as wms:
        with pytest.raises(WMSError) as info:
            await wms.submit_workflow({})
    error = info.value
    assert (error.status, error.title, error.type) == (400, "Bad Request", "https://ewms.example/problems/invalid")
    assert error.errors == ["'tasks' is a required property"] and not error.is_unavailable
    assert str(error) == "400 Bad Request: invalid workflow\n  - 'tasks' is a required property"


@pytest.mark.parametrize(
    ("reply", "status", "text"),
    [
        ((502, {"Content-Type": "text/html"}, b"<h1>proxy says no</h1>"), 502, "502 Bad Gateway: unexpected reply"),
        ((200, {"Content-Type": "text/plain"}, b"hello"), 200, "200 OK: unexpected reply from"),
    ],
)
async def test_replies_that_are_not_problem_details(server: Script, reply: Reply, status: int, text: str) -> None:
    server.replies = [reply]
    async with WMSClient(server.url, "t") as wms:
        with pytest.raises(WMSError) as info:
            await wms.submit_workflow({})
    assert info.value.status == status and str(info.value).startswith(text)
    assert reply[2].decode() in str(info.value)


async def test_an_empty_success_is_an_empty_object(server: Script) -> None:
    server.replies = [(200, {}, b""), ok([1])]
    async with WMSClient(server.url, "t") as wms:
        assert await wms.get_taskforce("TF-1") == {}
        assert await wms.get_taskforce("TF-1") == [1]
