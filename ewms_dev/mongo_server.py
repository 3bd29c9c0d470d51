"""Run an embedded MongoDB wire-protocol server (``nx-27017``) as a child process, on disk or in memory."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _executable() -> str:
    local = Path(sys.executable).with_name("nx-27017")
    found = str(local) if local.exists() else shutil.which("nx-27017")
    if not found:
        raise RuntimeError("nx-27017 is not installed (pip install -e . installs it)")
    return found


def start(data_dir: str | Path | None, port: int | None = None, timeout: float = 20.0) -> EmbeddedMongo:
    """Start the server (``data_dir=None`` keeps everything in memory) and wait until it accepts connections."""
    port = port or _free_port()
    # nx-27017 refuses to start while its pid file names a live process: give every server its own
    state_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="nx-27017-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    cmd = [_executable(), "--host", "127.0.0.1", "-p", str(port)]
    cmd += ["--pid-file", str(state_dir / "nx-27017.pid"), "--log-file", str(state_dir / "nx-27017.log")]
    cmd += ["--db", "memory"] if data_dir is None else ["--data-dir", str(data_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nx-27017 exited with {proc.returncode}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                LOGGER.info("embedded MongoDB (nx-27017) on port %d, data %s", port, data_dir or "in memory")
                return EmbeddedMongo(port, proc.pid, str(data_dir) if data_dir else None)
        time.sleep(0.05)
    stop_pid(proc.pid)
    raise TimeoutError(f"nx-27017 did not open port {port} within {timeout}s")


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """Terminate a server (and its process group) by pid, killing it if it does not exit in time."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
            time.sleep(0.05)


def stop(server: EmbeddedMongo) -> None:
    """Stop a server started by :func:`start`."""
    stop_pid(server.pid)
    LOGGER.info("embedded MongoDB on port %d stopped", server.port)
