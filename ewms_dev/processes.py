"""Child processes for the dev stack, tests and benchmarks: free ports, one launcher (a session of its own, output
to a log file), waiting until a service answers, stopping a process group, and polling until a condition holds."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    """True when ``port`` on 127.0.0.1 can be bound (e.g. to reuse the port of an earlier run)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def port_open(port: int) -> bool:
    """True when something accepts connections on ``port`` of 127.0.0.1."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone between the two looks (reading says ESRCH then)
        return False


def spawn(argv: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` with exactly ``env`` in a session of its own (so :func:`stop` ends its whole process group),
    its output appended to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip


def wait_http(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 60.0) -> None:
    """Return once ``url`` answers 200; RuntimeError if ``proc`` exits first, TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode}; see {log_path}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s; see {log_path}")


def start_wms(env: dict[str, str], log_path: Path, timeout: float = 60.0) -> subprocess.Popen[bytes]:
    """``python -m wms`` with ``env`` (a full environment), once it answers on ``REST_PORT``; stopped on failure."""
    proc = spawn([sys.executable, "-m", "wms"], env, log_path)
    try:
        wait_http(f"http://127.0.0.1:{env['REST_PORT']}/v0/", proc, log_path, timeout)
    except BaseException:
        stop(proc.pid)
        raise
    return proc


def stop(pid: int, timeout: float = 15.0) -> int | None:
    """SIGTERM a process group started by :func:`spawn` (or by ``start_new_session``), SIGKILL it if its leader is
    still there after ``timeout``. The leader's exit code when it was this process's child, else None."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return None
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not our child (e.g. ``ewms dev down``) or already collected
                if not alive(pid):
                    return None
            else:
                if done == pid:
                    return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
    return None


async def until(
    probe: Callable[[], T | Awaitable[T]],
    check: Callable[[T], object] = bool,
    within: float = 10.0,
    what: str = "condition",
    interval: float = 0.05,
) -> T:
    """Call ``probe`` (plain or async) every ``interval`` s until ``check`` accepts its value, and return that value.

    ``within`` is a liveness bound, not a timing claim: after it, TimeoutError with the last value.
    """
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {within}s; last: {value!r}")
        await asyncio.sleep(interval)


async def wait_for_phase(
    taskforces: Callable[[], Awaitable[list[dict[str, Any]]]], phase: str, within: float = 20.0
) -> list[dict[str, Any]]:
    """Poll ``taskforces()`` (TaskforceObjects, from any client) until every one is in ``phase``; the last answer."""
    return await until(
        taskforces, lambda docs: bool(docs) and all(d["phase"] == phase for d in docs), within, f"phase {phase}"
    )
