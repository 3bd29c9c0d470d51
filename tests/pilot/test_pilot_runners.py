"""Runners: exact command lines (docker, apptainer, process), image preparation, execution and its errors."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pilot_helpers import last_values, statuses

from ewms_wire.chirp import ChirpAttr
from pilot.config import PilotConfig, load_config
from pilot.errors import TaskExitError, TaskLaunchError, TaskTimeoutError
from pilot.runners import TaskFiles, execute, make_runner

TASK_ARGS = "python /app/run.py --in {{INFILE}} --out {{OUTFILE}} --hub={{DATA_HUB}} 'two words' '$(not run)'"


def make_config(tmp_path: Path, **env: str) -> PilotConfig:
    base = {
        "EWMS_PILOT_QUEUE_INCOMING": "qin",
        "EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS": "localhost",
        "EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST": str(tmp_path),
        "EWMS_PILOT_TASK_ENV_JSON": '{"MODE": "fast", "LIST": "a,b"}',
        "EWMS_PILOT_TASK_ARGS": TASK_ARGS,
    }
    return load_config({**base, **env})


def event_files(config: PilotConfig, event_id: str = "abc") -> TaskFiles:
    task_io = config.data_dir / event_id
    return TaskFiles(
        config.data_hub,
        stderr=task_io / "task-stderr.txt",
        task_io=task_io,
        infile=task_io / f"infile-{event_id}.in",
        outfile=task_io / f"outfile-{event_id}.out",
    )


CONTAINER_ARGS = [
    "python",
    "/app/run.py",
    "--in",
    "/ewms-pilot-data/task-io/infile-abc.in",
    "--out",
    "/ewms-pilot-data/task-io/outfile-abc.out",
    "--hub=/ewms-pilot-data/data-hub",
    "two words",
    "$(not run)",
]


def test_docker_command_line(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        _EWMS_PILOT_CONTAINER_PLATFORM="docker",
        EWMS_PILOT_TASK_IMAGE="ghcr.io/org/task:1.0",
        EWMS_PILOT_EXTERNAL_DIRECTORIES="/cvmfs/icecube.opensciencegrid.org",
        _EWMS_PILOT_DOCKER_SHM_SIZE="2g",
    )
    files = event_files(config)
    command = make_runner(config, {"PATH": "/usr/bin", "EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN": "secret"}).build(
        config.task, "ghcr.io/org/task:1.0", files
    )
    assert list(command.argv) == [
        "docker", "run", "--rm", "--shm-size=2g",
        "--mount", f"type=bind,source={files.task_io},target=/ewms-pilot-data/task-io",
        "--mount", f"type=bind,source={config.data_hub},target=/ewms-pilot-data/data-hub",
        "--mount", "type=bind,source=/cvmfs/icecube.opensciencegrid.org,"
        "target=/cvmfs/icecube.opensciencegrid.org,readonly",
        "--env", "MODE=fast",
        "--env", "LIST=a,b",
        "--env", "EWMS_TASK_DATA_HUB_DIR=/ewms-pilot-data/data-hub",
        "--env", "EWMS_TASK_INFILE=/ewms-pilot-data/task-io/infile-abc.in",
        "--env", "EWMS_TASK_OUTFILE=/ewms-pilot-data/task-io/outfile-abc.out",
        "ghcr.io/org/task:1.0", *CONTAINER_ARGS,
    ]  # fmt: skip
    assert shlex.split(str(command)) == list(command.argv)
    assert "'two words' '$(not run)'" in str(command)
    assert dict(command.env) == {"PATH": "/usr/bin"}  # the pilot's settings (tokens) stay out


def test_apptainer_command_line(tmp_path: Path) -> None:
    sandbox = tmp_path / "img"
    (sandbox / ".singularity.d").mkdir(parents=True)
    config = make_config(tmp_path, _EWMS_PILOT_CONTAINER_PLATFORM="apptainer", EWMS_PILOT_TASK_IMAGE=str(sandbox))
    files = event_files(config)
    command = make_runner(config, {"PATH": "/usr/bin", "_EWMS_PILOT_CLUSTER_ID": "1"}).build(
        config.task, str(sandbox), files
    )
    assert list(command.argv) == [
        "apptainer", "run", "--containall", "--no-eval",
        "--mount", f"type=bind,source={files.task_io},destination=/ewms-pilot-data/task-io",
        "--mount", f"type=bind,source={config.data_hub},destination=/ewms-pilot-data/data-hub",
        str(sandbox), *CONTAINER_ARGS,
    ]  # fmt: skip
    assert dict(command.env) == {
        "PATH": "/usr/bin",
        "APPTAINERENV_MODE": "fast",
        "APPTAINERENV_LIST": "a,b",
        "APPTAINERENV_EWMS_TASK_DATA_HUB_DIR": "/ewms-pilot-data/data-hub",
        "APPTAINERENV_EWMS_TASK_INFILE": "/ewms-pilot-data/task-io/infile-abc.in",
        "APPTAINERENV_EWMS_TASK_OUTFILE": "/ewms-pilot-data/task-io/outfile-abc.out",
    }


def test_init_task_mounts_only_the_data_hub(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        _EWMS_PILOT_CONTAINER_PLATFORM="docker",
        EWMS_PILOT_TASK_IMAGE="task:1",
        EWMS_PILOT_INIT_ARGS="setup --hub {{DATA_HUB}} {{INFILE}}",
    )
    assert config.init is not None
    files = TaskFiles(config.data_hub, stdout=tmp_path / "o", stderr=tmp_path / "e")
    command = make_runner(config, {}).build(config.init, "task:1", files)
    assert list(command.argv) == [
        "docker", "run", "--rm",
        "--mount", f"type=bind,source={config.data_hub},target=/ewms-pilot-data/data-hub",
        "--env", "EWMS_TASK_DATA_HUB_DIR=/ewms-pilot-data/data-hub",
        "task:1", "setup", "--hub", "/ewms-pilot-data/data-hub", "{{INFILE}}",
    ]  # fmt: skip


def test_process_command_substitutes_per_word_and_uses_a_local_environment(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    config = make_config(
        tmp_path, EWMS_PILOT_TASK_IMAGE=str(venv), EWMS_PILOT_TASK_ARGS="""sh -c 'cat "$0"' {{IN_FILE}}"""
    )
    files = event_files(config)
    host_env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "EWMS_PILOT_QUEUE_OUTGOING_AUTH_TOKEN": "secret"}
    command = make_runner(config, host_env).build(config.task, str(venv), files)
    assert list(command.argv) == ["sh", "-c", 'cat "$0"', str(files.infile)]
    assert command.env["PATH"] == f"{venv}/bin:/usr/bin:/bin"
    assert command.env["VIRTUAL_ENV"] == str(venv)
    assert command.env["EWMS_TASK_INFILE"] == str(files.infile)
    assert command.env["MODE"] == "fast" and command.env["HOME"] == "/root"
    assert not any(k.startswith("EWMS_PILOT") for k in command.env)


@pytest.mark.parametrize("platform", ["docker", "apptainer"])
def test_missing_container_runtime_is_a_clear_error(tmp_path: Path, platform: str) -> None:
    config = make_config(tmp_path, _EWMS_PILOT_CONTAINER_PLATFORM=platform, EWMS_PILOT_TASK_IMAGE="img:1")
    with pytest.raises(TaskLaunchError, match=f"the {platform} runner needs the '{platform}' command"):
        make_runner(config, {"PATH": str(tmp_path)}).check_available()


def test_pilot_exits_with_fatal_error_when_docker_is_missing(tmp_path: Path) -> None:
    env = {
        "PATH": str(tmp_path),  # no docker here
        "EWMS_PILOT_QUEUE_INCOMING": "qin",
        "EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS": "127.0.0.1:1",
        "EWMS_PILOT_TASK_IMAGE": "alpine:3",
        "EWMS_PILOT_TASK_ARGS": "true",
        "EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST": str(tmp_path),
        "_EWMS_PILOT_JOB_EVENT_LOG": str(tmp_path / "jel"),
    }
    result = subprocess.run([sys.executable, "-m", "pilot"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "the docker runner needs the 'docker' command, which is not on PATH" in result.stderr
    assert statuses(tmp_path / "jel") == ["Started", "FatalError"]
    assert "needs the 'docker' command" in str(last_values(tmp_path / "jel")[ChirpAttr.ERROR])


async def test_docker_pulls_a_missing_image_once(tmp_path: Path, fake_bin: Callable[[str, str], Path]) -> None:
    log = tmp_path / "docker.log"
    bin_dir = fake_bin("docker", f'echo "$*" >> {log}\n[ "$1" = pull ] || exit 1\n')
    config = make_config(tmp_path, _EWMS_PILOT_CONTAINER_PLATFORM="docker", EWMS_PILOT_TASK_IMAGE="org/task:2")
    assert await make_runner(config, {"PATH": str(bin_dir)}).prepare_image("org/task:2") == "org/task:2"
    assert log.read_text().splitlines() == ["image inspect org/task:2", "pull org/task:2"]

    bin_dir = fake_bin("docker", "echo 'manifest unknown' >&2; exit 1\n")
    with pytest.raises(TaskLaunchError, match=r"docker pull org/task:2 failed \(exit code 1\): manifest unknown"):
        await make_runner(config, {"PATH": str(bin_dir)}).prepare_image("org/task:2")


async def test_apptainer_image_must_be_a_sandbox_unless_building_is_allowed(
    tmp_path: Path, fake_bin: Callable[[str, str], Path]
) -> None:
    config = make_config(tmp_path, _EWMS_PILOT_CONTAINER_PLATFORM="apptainer", EWMS_PILOT_TASK_IMAGE="docker://x/y:1")
    with pytest.raises(TaskLaunchError, match="is not a sandbox directory"):
        await make_runner(config, {}).prepare_image("docker://x/y:1")

    log = tmp_path / "apptainer.log"
    bin_dir = fake_bin("apptainer", f'echo "$*" >> {log}\n')
    config = make_config(
        tmp_path,
        _EWMS_PILOT_CONTAINER_PLATFORM="apptainer",
        EWMS_PILOT_TASK_IMAGE="docker://x/y:1",
        _EWMS_PILOT_APPTAINER_IMAGE_DIRECTORY_MUST_BE_PRESENT="false",
        _EWMS_PILOT_APPTAINER_BUILD_WORKDIR=str(tmp_path / "builds"),
    )
    sandbox = await make_runner(config, {"PATH": str(bin_dir)}).prepare_image("docker://x/y:1")
    assert sandbox.startswith(str(tmp_path / "builds" / "ewms-apptainer-sandbox-"))
    assert log.read_text().splitlines() == [f"build --fix-perms --sandbox {sandbox} docker://x/y:1"]


def _files(tmp_path: Path) -> TaskFiles:
    return TaskFiles(tmp_path, stderr=tmp_path / "stderr", stdout=tmp_path / "stdout")


async def test_failed_task_reports_exit_code_and_last_stderr_lines(tmp_path: Path) -> None:
    config = make_config(tmp_path, EWMS_PILOT_TASK_ARGS="sh -c 'echo one >&2; echo two >&2; exit 3'")
    command = make_runner(config).build(config.task, "", _files(tmp_path))
    with pytest.raises(TaskExitError) as info:
        await execute(command, _files(tmp_path), None)
    assert str(info.value) == "task failed (exit code 3): one\ntwo"


async def test_timeout_kills_the_task_and_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    config = make_config(tmp_path, EWMS_PILOT_TASK_ARGS=f"sh -c 'sleep 300 & echo $! > {pid_file}; wait'")
    command = make_runner(config).build(config.task, "", _files(tmp_path))
    started = time.monotonic()
    with pytest.raises(TaskTimeoutError, match=r"^task timed out after 0.3s$"):
        await execute(command, _files(tmp_path), 0.3)
    assert time.monotonic() - started < 120, "liveness bound, not a timing target: the 300 s task was not waited for"
    await asyncio.sleep(0.1)
    assert _process_gone(int(pid_file.read_text()))


async def test_cancelling_the_event_kills_the_task_and_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    config = make_config(tmp_path, EWMS_PILOT_TASK_ARGS=f"sh -c 'sleep 300 & echo $! > {pid_file}; wait'")
    command = make_runner(config).build(config.task, "", _files(tmp_path))
    run = asyncio.ensure_future(execute(command, _files(tmp_path), None))
    for _ in range(3000):  # liveness bound, not a timing target: the task writes its child's pid at once
        if (child := _pid_in(pid_file)) is not None:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the task never started its child")
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await asyncio.sleep(0.1)
    assert _process_gone(child)


def _pid_in(path: Path) -> int | None:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text.isdigit() else None


def _process_gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" in status.read_text()


async def test_missing_executable_is_a_launch_error(tmp_path: Path) -> None:
    config = make_config(tmp_path, EWMS_PILOT_TASK_ARGS="no-such-command-xyz {{INFILE}}")
    command = make_runner(config, {"PATH": os.defpath}).build(config.task, "", _files(tmp_path))
    with pytest.raises(TaskLaunchError, match="cannot start task command 'no-such-command-xyz'"):
        await execute(command, _files(tmp_path), None)
