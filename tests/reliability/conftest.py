"""Fixtures of the fault-injection tests: a broker node of their own (they stop and restart it) and TMS processes
(the figures each scenario reports come from ``figures`` in ``tests/conftest.py``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ewms_dev import broker_node, processes
from ewms_dev.service_env import tms_env


@pytest.fixture(scope="session")
def broker_nodes(broker_signing_key: str) -> Iterator[list[broker_node.BrokerNode]]:
    """A private RabbitMQ node for this directory; a test that restarts it appends the new node (same ports/data).

    The data dir is outside pytest's temp root, which another pytest session may lock down (mode 0700) meanwhile.
    """
    data_dir = tempfile.mkdtemp(prefix="ewms-rel-rmq-")
    nodes = [broker_node.start(data_dir, broker_signing_key)]
    yield nodes
    broker_node.stop(nodes[-1])
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def broker(broker_nodes: list[broker_node.BrokerNode]) -> broker_node.BrokerNode:
    """Overrides the shared session broker here: these tests stop and restart their broker."""
    return broker_nodes[0]


@pytest.fixture
def spawn_tms(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Factory: ``spawn_tms(wms_url, token, entry=("-m", "tms"), **env)`` -> a TMS process (local backend, fast
    loops); ``entry`` is what follows ``python`` (e.g. a test entry module that installs a crash point).

    Its state lives in ``tmp_path / "tms"`` (shared by every TMS of the test, so a restart finds the state of the
    previous one); its output goes to ``tmp_path / "tms-<n>.log"``. Stopped with SIGTERM at teardown.
    """
    procs: list[subprocess.Popen[bytes]] = []

    def _spawn(
        wms_url: str, token: str, entry: tuple[str, ...] = ("-m", "tms"), **overrides: str
    ) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            # the schedd of location "local" in the test WMS
            **tms_env(wms_url, token, "local-ap.test", tmp_path / "tms"),
            "TMS_POLL_INTERVAL": "0.2",
            "TMS_WATCHER_INTERVAL": "0.25",
            "TMS_ERROR_WAIT": "1",
            "TMS_LOCAL_KILL_GRACE": "2",
            "TMS_LOCAL_MAX_CONCURRENT_JOBS": "4",
            **overrides,
        }
        procs.append(processes.spawn([sys.executable, *entry], env, tmp_path / f"tms-{len(procs)}.log"))
        return procs[-1]

    yield _spawn
    for proc in procs:
        if proc.poll() is None:
            processes.stop(proc.pid, timeout=30)
