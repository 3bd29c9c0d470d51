"""Fixtures for the ``ewms`` CLI tests: the real ``main()`` run in a worker thread (it owns its own event loop, and
the broker client blocks it) against a real WMS running in the test loop."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator

import pytest
from cli_support import Run, RunCLI

from ewms_client import WMSClient
from wms.auth import Role
from wms.cli.main import main


@pytest.fixture(autouse=True)
def no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Keep the developer's own EWMS_* settings and config file out of the tests."""
    monkeypatch.delenv("EWMS_URL", raising=False)
    monkeypatch.delenv("EWMS_TOKEN", raising=False)
    monkeypatch.setenv("EWMS_CONFIG", str(tmp_path / "no-config.json"))


@pytest.fixture
def token(make_token) -> str:
    """A real token of user ``alice``."""
    return str(make_token(Role.USER, "alice"))


@pytest.fixture
def ewms(wms_server, token: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> RunCLI:
    """``await ewms(*argv, stdin="", connect=True)`` -> :class:`Run`; ``connect`` adds ``--url``/``--token``."""

    async def _run(*argv: str, stdin: str = "", connect: bool = True) -> Run:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        prefix = ["--url", wms_server.url, "--token", token] if connect else []
        code = await asyncio.to_thread(main, [*prefix, *argv])
        out, err = capsys.readouterr()
        return Run(int(code), out, err)

    return _run


@pytest.fixture
async def client(wms_server, token: str) -> AsyncIterator[WMSClient]:
    """The Python client, as alice."""
    async with WMSClient(wms_server.url, token) as wms:
        yield wms
