"""Task processes (``pilot.processes``): what a task gets (stdin, output files, signals, descriptors, its command
found on its own PATH) and how its exit comes back (codes, signals, without pidfds). Timeouts and cancellation:
``test_pilot_runners.py``."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from pilot import processes
from pilot.errors import TaskLaunchError
from pilot.processes import spawn
from pilot.runners import CommandLine, TaskFiles, execute

ENV = {"PATH": os.defpath}


def _no_pidfds(pid: int) -> int:
    raise OSError(38, "Function not implemented")  # ENOSYS: a kernel older than 5.3


def _files(tmp_path: Path, stdout: bool = True) -> TaskFiles:
    return TaskFiles(tmp_path, stderr=tmp_path / "stderr", stdout=tmp_path / "stdout" if stdout else None)


def _sh(script: str, env: dict[str, str] = ENV) -> CommandLine:
    return CommandLine(("sh", "-c", script), env)


async def test_output_goes_to_the_files_stdin_is_empty_and_exit_codes_come_back(tmp_path: Path) -> None:
    (tmp_path / "stdout").write_text("left over from the last event\n")
    proc = spawn(["sh", "-c", "cat; echo out; echo err >&2; exit 7"], ENV, tmp_path / "stdout", tmp_path / "stderr")
    assert await proc.wait() == 7  # cat read /dev/null, not the pilot's stdin
    assert (tmp_path / "stdout").read_text() == "out\n"  # truncated, not appended
    assert (tmp_path / "stderr").read_text() == "err\n"
    assert await proc.wait() == 7  # reaped once, asked again


async def test_discarded_stdout_and_a_signal_death(tmp_path: Path) -> None:
    proc = spawn(["sh", "-c", "echo out; kill -KILL $$"], ENV, None, tmp_path / "stderr")
    assert await proc.wait() == -signal.SIGKILL
    assert not (tmp_path / "stdout").exists()


async def test_a_task_gets_default_signals_and_no_descriptor_of_the_pilot(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)  # as if the pilot had inherited it from whatever started it
    try:
        processes.keep_descriptors_from_tasks()
        assert not os.get_inheritable(write_end)
        await execute(_sh("grep SigIgn /proc/$$/status; ls /proc/$$/fd"), _files(tmp_path), None)
    finally:
        os.close(read_end)
        os.close(write_end)
    sig_ign, *fds = (tmp_path / "stdout").read_text().split()[1:]
    ignored = int(sig_ign, 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)) and not ignored & (1 << (signal.SIGXFSZ - 1))
    assert str(write_end) not in fds and {"0", "1", "2"} <= set(fds)


async def test_the_command_is_found_on_the_tasks_path_again_when_it_moves(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for bin_dir in (first, second):
        bin_dir.mkdir()
        tool = bin_dir / "ewms-test-tool"
        tool.write_text(f"#!/bin/sh\necho {bin_dir.name}\n")
        tool.chmod(0o755)
    env = {"PATH": f"{first}:{second}:{os.defpath}"}  # not the pilot's PATH: the task's
    command = CommandLine(("ewms-test-tool",), env)
    await execute(command, _files(tmp_path), None)
    assert (tmp_path / "stdout").read_text() == "first\n"
    (first / "ewms-test-tool").unlink()  # the file found (and remembered) before is gone
    await execute(command, _files(tmp_path), None)
    assert (tmp_path / "stdout").read_text() == "second\n"
    (second / "ewms-test-tool").unlink()
    with pytest.raises(TaskLaunchError, match=r"^cannot start task command 'ewms-test-tool': No such file"):
        await execute(command, _files(tmp_path), None)


async def test_an_output_file_that_cannot_be_created_is_a_launch_error(tmp_path: Path) -> None:
    files = TaskFiles(tmp_path, stderr=tmp_path / "gone" / "stderr")
    with pytest.raises(TaskLaunchError, match=f"^cannot create the task's output file {tmp_path}/gone/stderr: "):
        await execute(_sh("true"), files, None)


async def test_exits_are_awaited_by_a_thread_without_pidfds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "pidfd_open", _no_pidfds)
    proc = spawn(["sh", "-c", "sleep 0.2; exit 3"], ENV, None, tmp_path / "stderr")
    assert await proc.wait() == 3


@pytest.mark.parametrize("pidfds", [True, False])
async def test_a_task_reaped_by_someone_else_is_an_error_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pidfds: bool
) -> None:
    if not pidfds:
        monkeypatch.setattr(os, "pidfd_open", _no_pidfds)
    collect = os.waitpid

    def already_reaped(pid: int, options: int) -> tuple[int, int]:
        raise ChildProcessError(10, "No child processes")  # what waitpid says once another waiter took the status

    monkeypatch.setattr(os, "waitpid", already_reaped)
    proc = spawn(["true"], ENV, None, tmp_path / "stderr")
    with pytest.raises(ChildProcessError):
        await proc.wait()
    collect(proc.pid, 0)  # no zombie left behind
