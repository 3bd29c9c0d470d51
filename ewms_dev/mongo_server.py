"""Run a MongoDB wire-protocol server (``nx-27017``) as a child process, on disk or in memory (dev stack, tests,
benchmarks)."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ewms_dev import processes

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedMongo:
    """A running ``nx-27017`` server."""

    port: int
    pid: int
    data_dir: str | None

    @property
    def uri(self) -> str:
        """The ``mongodb://`` URI that reaches it."""
        return f"mongodb://127.0.0.1:{self.port}"


def _executable() -> str:
    local = Path(sys.executable).with_name("nx-27017")
    found = str(local) if local.exists() else shutil.which("nx-27017")
    if not found:
        raise RuntimeError("nx-27017 is not installed (pip install -e . installs it)")
    return found


def start(data_dir: str | Path | None, port: int | None = None, timeout: float = 20.0) -> EmbeddedMongo:
    """Start the server (``data_dir=None`` keeps everything in memory) and wait until it accepts connections."""
    port = port or processes.free_port()
    # nx-27017 refuses to start while its pid file names a live process: give every server its own
    state_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="nx-27017-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    cmd = [_executable(), "--host", "127.0.0.1", "-p", str(port)]
    cmd += ["--pid-file", str(state_dir / "nx-27017.pid"), "--log-file", str(state_dir / "nx-27017.log")]
    cmd += ["--db", "memory"] if data_dir is None else ["--data-dir", str(data_dir)]
    proc = processes.spawn(cmd, dict(os.environ), state_dir / "nx-27017.out")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nx-27017 exited with {proc.returncode}")
        if processes.port_open(port):
            LOGGER.info("MongoDB wire-protocol server (nx-27017) on port %d, data %s", port, data_dir or "in memory")
            return EmbeddedMongo(port, proc.pid, str(data_dir) if data_dir else None)
        time.sleep(0.05)
    processes.stop(proc.pid)
    raise TimeoutError(f"nx-27017 did not open port {port} within {timeout}s")


def stop(server: EmbeddedMongo) -> None:
    """Stop a server started by :func:`start`."""
    processes.stop(server.pid)
    LOGGER.info("embedded MongoDB on port %d stopped", server.port)
