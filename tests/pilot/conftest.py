"""Fixtures for pilot tests: the session broker with admin helpers, pilot environments, fake binaries."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from pilot_helpers import Broker, queue_env

from ewms_dev.broker_node import BrokerNode


@pytest.fixture(scope="session")
def rmq(broker: BrokerNode, broker_signing_key: str) -> Broker:
    """The session's private broker, with admin helpers."""
    return Broker(broker, broker_signing_key)


@pytest.fixture
def pilot_env(rmq: Broker, tmp_path: Path) -> Callable[..., dict[str, str]]:
    """Factory: the environment of a pilot reading ``inputs`` and writing ``outputs`` (plus overrides)."""

    def make(inputs: list[str], outputs: list[str], sub: str = "pilot", **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EWMS_", "_EWMS_"))}
        env.update(queue_env(rmq, "INCOMING", inputs, sub))
        if outputs:
            env.update(queue_env(rmq, "OUTGOING", outputs, sub))
        env.update(
            EWMS_PILOT_TIMEOUT_QUEUE_INCOMING="1",
            EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST=str(tmp_path / "work"),
            EWMS_PILOT_RECONNECT_TIMEOUT="20",
            _EWMS_PILOT_JOB_EVENT_LOG=str(tmp_path / "pilot.jel"),
            _EWMS_PILOT_CLUSTER_ID="7",
            _EWMS_PILOT_PROC_ID="3",
        )
        env.update(overrides)
        return env

    return make


@pytest.fixture
def fake_bin(tmp_path: Path) -> Callable[[str, str], Path]:
    """Factory: write an executable script ``name`` into a private bin dir; returns that dir."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    def make(name: str, script: str) -> Path:
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(0o755)
        return bin_dir

    return make
