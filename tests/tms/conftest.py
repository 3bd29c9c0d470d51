"""Fixtures for the TMS tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from tms_fakes import FAKE_PILOT, TOKEN, FakeWMS, start_fake_wms

from tms.config import TMSConfig


@pytest.fixture
async def fake_wms() -> AsyncIterator[FakeWMS]:
    """An in-memory WMS serving the TMS routes on a free port."""
    wms, server = await start_fake_wms()
    yield wms
    server.stop()
    await server.close_all_connections()


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., TMSConfig]:
    """Factory: a TMSConfig with dirs under ``tmp_path``, fast timings and the fake pilot; overrides as kwargs."""

    def _make(wms_url: str = "http://127.0.0.1:9", **overrides: Any) -> TMSConfig:
        settings: dict[str, Any] = {
            "ewms_address": wms_url,
            "schedd": "ap.test",
            "backend": "local",
            "ewms_token": TOKEN,
            "state_dir": tmp_path / "state",
            "job_event_log_dir": tmp_path / "jel",
            "poll_interval": 0.1,
            "watcher_interval": 0.1,
            "error_wait": 0.2,
            "http_retries": 1,
            "http_timeout": 5.0,
            "local_pilot_command": FAKE_PILOT,
            "local_monitor_interval": 0.2,
            "local_kill_grace": 1.0,
        }
        settings.update(overrides)
        return TMSConfig(**settings)

    return _make
