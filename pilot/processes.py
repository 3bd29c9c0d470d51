"""Task processes: started with ``os.posix_spawn`` and awaited from asyncio.

A pilot starts one process per event, so the start is on every event's path. ``os.posix_spawn`` (vfork and exec,
arguments and environment encoded in C) costs the pilot a fraction of the CPU of ``asyncio.create_subprocess_exec``,
which encodes the environment in Python and forks a child that runs Python before it execs. Each task gets its own
session (process group: a timeout or cancellation kills its children too), stdin from /dev/null, stdout and stderr to
files, and the default action for the signals Python ignores (SIGPIPE, SIGXFSZ), as ``subprocess`` gives them. No
other descriptor reaches a task: Python opens its own close-on-exec, and :func:`keep_descriptors_from_tasks` makes
those the pilot inherited so too.
Exits are awaited through a pidfd where the kernel has them (Linux >= 5.3), else by a thread per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

LOGGER = logging.getLogger(__name__)

KILL_GRACE_SECONDS = 5.0
DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)  # ignored by Python, default again in a task
CAPTURE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
_FOUND: dict[tuple[str, str], str] = {}  # (command, PATH) -> the executable file


class TaskProcess:
    """A started task: its pid (also its process group) and its exit, reaped exactly once."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._exit = _watch_exit(pid)

    async def wait(self) -> int:
        """Its exit code (negative: the signal that killed it); cancelling the caller leaves the process alone."""
        return await asyncio.shield(self._exit)

    async def terminate(self) -> None:
        """SIGTERM its process group, SIGKILL it after a grace period; return once the task has exited."""
        for sig, grace in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                await asyncio.wait_for(self.wait(), grace)
                return
            except TimeoutError:
                LOGGER.warning("task process %d ignored SIGTERM for %.0fs; killing it", self.pid, grace)


def spawn(argv: Sequence[str], env: Mapping[str, str], stdout: Path | None, stderr: Path) -> TaskProcess:
    """Start ``argv`` in a new session, its command looked up on ``env``'s PATH as exec does; ``stdout`` None
    discards it. Raises :class:`OSError` when a capture file cannot be created or the command cannot be started."""
    command, path = argv[0], env.get("PATH", os.defpath)
    fds: list[int] = []
    try:
        actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)
        ]
        for target, capture in ((1, stdout), (2, stderr)):
            if capture is None:
                actions.append((os.POSIX_SPAWN_OPEN, target, os.devnull, os.O_WRONLY, 0))
            else:
                fds.append(os.open(capture, CAPTURE_FLAGS, 0o666))
                actions.append((os.POSIX_SPAWN_DUP2, fds[-1], target))

        def start(executable: str) -> int:
            return os.posix_spawn(
                executable, list(argv), env, file_actions=actions, setsid=True, setsigdef=DEFAULT_SIGNALS
            )

        try:
            pid = start(_find(command, path))
        except OSError:
            if _FOUND.pop((command, path), None) is None:
                raise
            pid = start(_find(command, path))  # the file found earlier is gone: look again
    finally:
        for fd in fds:
            os.close(fd)
    return TaskProcess(pid)


def keep_descriptors_from_tasks() -> None:
    """Mark every descriptor beyond stdin, stdout and stderr close-on-exec (``subprocess``'s ``close_fds``, once)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:  # no /proc: nothing to list (the pilot runs on Linux)
        return
    for name in names:
        if int(name) > 2:
            with contextlib.suppress(OSError):  # e.g. the listing's own descriptor, closed since
                os.set_inheritable(int(name), False)


def _find(command: str, path: str) -> str:
    """``command`` itself when it names a file (has a slash), else its first executable match on ``path`` (looked
    up once, then remembered)."""
    if "/" in command:
        return command
    found = _FOUND.get((command, path)) or shutil.which(command, path=path)
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)
    _FOUND[command, path] = found
    return found


def _watch_exit(pid: int) -> asyncio.Future[int]:
    """A future set to the exit code of child ``pid`` once it has exited (or to the error when something else
    reaped it: said, rather than waited for forever)."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[int] = loop.create_future()

    def reap() -> None:  # it has exited: waitpid only collects its status
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError as exc:
            exited.set_exception(exc)
        else:
            exited.set_result(os.waitstatus_to_exitcode(status))

    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfds here (kernel < 5.3, not Linux) or no fd left: a thread waits
        threading.Thread(target=_await_exit, args=(pid, loop, reap), name=f"wait-{pid}", daemon=True).start()
        return exited

    def on_readable() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        reap()

    loop.add_reader(pidfd, on_readable)
    return exited


def _await_exit(pid: int, loop: asyncio.AbstractEventLoop, reap: Callable[[], None]) -> None:
    """In a thread: block until child ``pid`` has exited, leaving it to ``reap`` on the loop."""
    with contextlib.suppress(ChildProcessError):  # reaped elsewhere: ``reap`` says so
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(reap)
