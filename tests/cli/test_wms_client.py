"""``WMSClient`` transport behaviour against a scripted HTTP server: retries of read-only calls on 503, and
errors built from replies that are not problem details."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from ewms_client import WMSClient, WMSError

Reply = tuple[int, str, str, bytes]  # status, reason, content type, body
PROBLEM_503 = (
    503,
    "Service Unavailable",
    "application/problem+json",
    json.dumps({"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": "db down"}).encode(),
)


@asynccontextmanager
async def scripted(replies: list[Reply]) -> AsyncIterator[tuple[str, list[str]]]:
    """A server answering its n-th request with ``replies[n]`` (the last one repeated); yields its URL and the
    request lines it saw."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"content-length: *(\d+)", head, re.I)
        await reader.readexactly(int(length.group(1)) if length else 0)
        seen.append(head.split(b"\r\n")[0].decode())
        status, reason, ctype, body = replies[min(len(seen), len(replies)) - 1]
        headers = f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nRetry-After: 0\r\nConnection: close\r\n"
        writer.write(f"HTTP/1.1 {status} {reason}\r\n{headers}\r\n".encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", seen


async def test_read_only_calls_are_retried_on_503() -> None:
    ok = (200, "OK", "application/json", b'{"workflow_id": "WF-1"}')
    async with scripted([PROBLEM_503, PROBLEM_503, ok]) as (url, seen), WMSClient(url, "t") as wms:
        assert await wms.get_workflow("WF-1") == {"workflow_id": "WF-1"}
    assert seen == ["GET /v0/workflows/WF-1 HTTP/1.1"] * 3


async def test_writes_are_not_retried_and_keep_the_problem() -> None:
    async with scripted([PROBLEM_503]) as (url, seen), WMSClient(url + "/v0/", "t") as wms:
        with pytest.raises(WMSError) as info:
            await wms.submit_workflow({})
    assert seen == ["POST /v0/workflows HTTP/1.1"]
    assert (info.value.status, info.value.detail, info.value.is_unavailable) == (503, "db down", True)
    assert str(info.value) == "503 Service Unavailable: db down"


@pytest.mark.parametrize(
    ("reply", "status", "text"),
    [
        ((502, "Bad Gateway", "text/html", b"<h1>proxy says no</h1>"), 502, "502 Bad Gateway: unexpected reply from"),
        ((200, "OK", "text/plain", b"hello"), 200, "200 OK: unexpected reply from"),
    ],
)
async def test_replies_that_are_not_problem_details(reply: Reply, status: int, text: str) -> None:
    async with scripted([reply]) as (url, _), WMSClient(url, "t") as wms:
        with pytest.raises(WMSError) as info:
            await wms.get_taskforce("TF-1")
    assert info.value.status == status and str(info.value).startswith(text)
    assert reply[3].decode() in str(info.value)
