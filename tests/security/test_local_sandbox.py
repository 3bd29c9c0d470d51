"""A hostile task on the local backend, started as root: it runs as the unprivileged pilot account, cannot read the
stack's data directory (its keys, the TMS state, the shared job event log, other taskforces' env files with their
queue tokens) and cannot forge events; a normal task still completes and its pilot's chirps still reach the log."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import htcondor2
import pytest

from tms.backends.local import PRIVATE_LOG_NAME, LocalBackend
from tms.config import TMSConfig
from tms.submit_description import ENV_FILE_NAME, build_job_spec
from tms.watcher.job_logs import read_tail

PILOT_USER = "ewms-pilot"  # created by scripts/setup.sh
SANDBOX_PILOT = (sys.executable, str(Path(__file__).with_name("sandbox_pilot.py")))
TERMINATED, GENERIC, HELD = 5, 8, 12

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pilots drop privileges only when the TMS runs as root")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A stack data directory as the dev stack makes it: searchable by all, its keys file 0600, the TMS state in it."""
    path = Path(tempfile.mkdtemp(prefix="ewms-sandbox-", dir="/tmp"))
    path.chmod(0o755)
    (path / "keys.json").write_text('{"broker_signing_key": "s3cret"}')
    (path / "keys.json").chmod(0o600)
    yield path
    shutil.rmtree(path)
    shutil.rmtree(path.with_name(path.name + "-sandboxes"), ignore_errors=True)


def _config(data_dir: Path) -> TMSConfig:
    state = data_dir / "tms"
    return TMSConfig(
        ewms_address="http://127.0.0.1:9",
        schedd="ap.test",
        backend="local",
        ewms_token="token",
        state_dir=state,
        job_event_log_dir=state / "job-event-logs",
    )


def _backend(config: TMSConfig, data_dir: Path) -> LocalBackend:
    """The local backend as the TMS makes it when started as root, with its sandboxes beside the data dir."""
    return LocalBackend(
        config.job_event_log_dir,
        config.state_dir,
        pilot_command=SANDBOX_PILOT,
        monitor_interval=0.2,
        pilot_user=PILOT_USER,
        sandbox_dir=data_dir.with_name(data_dir.name + "-sandboxes"),
    )


def _pending(uuid: str, task: str) -> dict[str, Any]:
    worker = {
        "do_transfer_worker_stdouterr": False,
        "max_worker_runtime": 600,
        "n_cores": 1,
        "priority": 10,
        "worker_disk": "1G",
        "worker_memory": "1G",
        "condor_requirements": "",
    }
    pilot = {"tag": "latest", "environment": {}, "input_files": []}
    taskforce = {"taskforce_uuid": uuid, "n_workers": 1, "pilot_config": pilot, "worker_config": worker}
    directive = {"task_args": task, "input_queues": [], "output_queues": []}  # the TMS builds the pilot's task
    return {"taskforce": taskforce, "task_directive": directive, "mqprofiles": []}


def _events(log: Path) -> list[tuple[int, int, int]]:
    found = htcondor2.JobEventLog(str(log)).events(0)
    return [(int(e["EventTypeNumber"]), e["Cluster"], e.get("Proc", -1)) for e in found]


async def _run(backend: LocalBackend, config: TMSConfig, uuid: str, task: str) -> tuple[int, Path]:
    """Run one job to its end; its cluster id and job directory (where its stdout and stderr are)."""
    spec, _ = build_job_spec(config, _pending(uuid, task), backend.job_event_log_path())
    cluster = (await backend.submit(spec, 1)).cluster_id
    deadline = time.monotonic() + 60  # a liveness bound, not a timing check
    while not any(e[0] == TERMINATED and e[1] == cluster for e in _events(spec.job_event_log)):
        assert time.monotonic() < deadline, _events(spec.job_event_log)
        await asyncio.sleep(0.1)
    return cluster, spec.taskforce_dir / f"cluster-{cluster}" / "job-0"


def _return_value(log: Path, cluster: int) -> int:
    for event in htcondor2.JobEventLog(str(log)).events(0):
        if int(event["EventTypeNumber"]) == TERMINATED and event["Cluster"] == cluster:
            return int(event["ReturnValue"])
    raise AssertionError(f"cluster {cluster} did not terminate")


@pytest.mark.parametrize(
    "target",
    [
        "{data}/keys.json",
        "{data}/tms/job-event-logs/{today}",
        "{data}/tms/job-event-logs/ewms-taskforce-TF-other/" + ENV_FILE_NAME,
        "{data}/tms/local-backend-jobs.json",
    ],
)
async def test_a_task_cannot_read_the_stacks_data_dir(data_dir: Path, target: str) -> None:
    config = _config(data_dir)
    backend = _backend(config, data_dir)
    try:
        # another tenant's taskforce: its env file holds its queue tokens
        build_job_spec(config, _pending("TF-other", "true"), backend.job_event_log_path())
        path = target.format(data=data_dir, today=backend.job_event_log_path().name)
        cluster, workdir = await _run(backend, config, "TF-thief", f"id -un; cat {path}")
        assert _return_value(backend.job_event_log_path(), cluster) != 0
        assert "Permission denied" in (workdir / "_condor_stderr").read_text()
        assert (workdir / "_condor_stdout").read_text().split()[0] == PILOT_USER
        assert "s3cret" not in (workdir / "_condor_stdout").read_text()
    finally:
        await backend.close()


async def test_a_normal_task_completes_and_only_its_own_chirps_are_relayed(data_dir: Path) -> None:
    config = _config(data_dir)
    backend = _backend(config, data_dir)
    try:
        task = "echo result > out.txt && stat -c %U . out.txt"
        cluster, job_dir = await _run(backend, config, "TF-good", task)
        log = backend.job_event_log_path()
        assert _return_value(log, cluster) == 0
        assert (job_dir / "_condor_stdout").read_text().split() == [PILOT_USER] * 2  # its sandbox, its files
        assert list(backend.sandbox_dir.iterdir()) == []  # removed at the end
        assert backend.sandbox_dir.stat().st_mode & 0o777 == 0o711
        assert config.state_dir.stat().st_mode & 0o777 == 0o700
        assert config.job_event_log_dir.stat().st_mode & 0o777 == 0o700
        events = _events(log)
        assert [e for e in events if e[0] == GENERIC] == [(GENERIC, cluster, 0)] * 2  # Started, Done
        assert (HELD, cluster, 0) not in events  # the forged hold was dropped
        assert all(e[1] == cluster for e in events)  # and so was the forged end of another job
    finally:
        await backend.close()


@pytest.mark.parametrize("swap", ["ln -sf {keys} _condor_stdout", "rm _condor_stdout && mkfifo _condor_stdout"])
async def test_a_task_cannot_make_the_tms_ship_or_relay_another_file(data_dir: Path, swap: str) -> None:
    config = _config(data_dir)
    backend = _backend(config, data_dir)
    try:  # the pilot account owns its sandbox: it swaps its output and its private log for a link or a FIFO
        task = f"{swap} && ln -sf {{keys}} {PRIVATE_LOG_NAME}.x && mv {PRIVATE_LOG_NAME}.x {PRIVATE_LOG_NAME}"
        _, workdir = await _run(backend, config, "TF-swap", task.format(keys=data_dir / "keys.json"))
        assert read_tail(workdir / "_condor_stdout", 4096) == ""
        assert "s3cret" not in backend.job_event_log_path().read_text()
    finally:
        await backend.close()
