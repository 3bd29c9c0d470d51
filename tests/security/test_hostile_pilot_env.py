"""A hostile taskforce reaching the TMS (stored before the WMS checked it, or through a WMS bug): its pilot
environment and input files are checked again before a submit description is written, the operator's values win,
and a taskforce whose jobs cannot start is refused or held without taking another taskforce's slot."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import htcondor2
import pytest

from tms.backends.base import BackendError, JobSpec
from tms.backends.local import LocalBackend
from tms.config import TMSConfig
from tms.submit_description import ENV_FILE_NAME, TaskforceSpecError, build_job_spec

TERMINATED, HELD = 5, 12
OK_PILOT = (sys.executable, "-c", "import sys; sys.exit(0)")


def make_config(tmp_path: Path, **overrides: Any) -> TMSConfig:
    settings: dict[str, Any] = {
        "ewms_address": "http://127.0.0.1:9",
        "schedd": "ap.test",
        "backend": "local",
        "ewms_token": "token",
        "state_dir": tmp_path / "state",
        "job_event_log_dir": tmp_path / "jel",
    }
    return TMSConfig(**{**settings, **overrides})


def pending(uuid: str, environment: dict[str, Any] | None = None, input_files: list[str] | None = None) -> dict:
    """A pending-starter answer for one worker, with no queues."""
    taskforce = {
        "taskforce_uuid": uuid,
        "n_workers": 1,
        "pilot_config": {"tag": "latest", "environment": environment or {}, "input_files": input_files or []},
        "worker_config": {
            "do_transfer_worker_stdouterr": False,
            "max_worker_runtime": 600,
            "n_cores": 1,
            "priority": 10,
            "worker_disk": "1G",
            "worker_memory": "512M",
            "condor_requirements": "",
        },
    }
    return {"taskforce": taskforce, "task_directive": {"input_queues": [], "output_queues": []}, "mqprofiles": []}


@pytest.mark.parametrize(
    "environment",
    [
        {"A=1; touch X; B": "1"},
        {"K=1": "x"},
        {"X\n": "1"},
        {"1X": "1"},
        {"$(touch X)": "1"},
        {"EWMS_PILOT_TASK_TIMEOUT": "run\x00hidden"},
        {"EWMS_PILOT_OKAY_ERRORS": ["a", "b\x00"]},
    ],
)
def test_pilot_environment_is_checked_before_the_env_file_is_written(tmp_path: Path, environment) -> None:  # type: ignore[no-untyped-def]
    config = make_config(tmp_path)
    with pytest.raises(TaskforceSpecError, match="pilot environment"):
        build_job_spec(config, pending("TF-bad", environment), tmp_path / "x.jel")
    assert not (config.job_event_log_dir / "ewms-taskforce-TF-bad" / ENV_FILE_NAME).exists()


def test_env_file_runs_nothing_whatever_the_values(tmp_path: Path) -> None:
    hostile = {
        "V1": "'; touch {m}; '",
        "V2": "$(touch {m})",
        "V3": "`touch {m}`",
        "V4": "a\ntouch {m}\n",
        "V5": '"; touch {m}; "',
    }
    marker = tmp_path / "pwned"
    env = {k: v.format(m=marker) for k, v in hostile.items()}
    spec, _ = build_job_spec(make_config(tmp_path), pending("TF-q", env), tmp_path / "x.jel")
    env_file = spec.taskforce_dir / ENV_FILE_NAME
    run = subprocess.run(["sh", "-c", f". {env_file} && env -0"], capture_output=True, env={"PATH": "/usr/bin:/bin"})
    out = run.stdout.decode()
    given = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    assert not marker.exists()
    assert all(given[k] == v for k, v in env.items())


def test_operator_values_win_over_the_users(tmp_path: Path) -> None:
    config = make_config(tmp_path, extra_pilot_env={"EWMS_PILOT_TIMEOUT_QUEUE_INCOMING": "30"})
    user = {"EWMS_PILOT_TIMEOUT_QUEUE_INCOMING": "999999", "EWMS_PILOT_HTCHIRP_DEST": "JOB_ATTR"}
    spec, _ = build_job_spec(config, pending("TF-op", user), tmp_path / "x.jel")
    assert spec.pilot_env["EWMS_PILOT_TIMEOUT_QUEUE_INCOMING"] == "30"
    assert spec.pilot_env["EWMS_PILOT_HTCHIRP_DEST"] == "JOB_EVENT_LOG"


@pytest.mark.parametrize(
    "name",
    [
        "/etc/passwd",
        "{shared}/../../etc/passwd",
        "{shared}/link-to-passwd",
        "{shared}-other/x",
        "{shared}/a.dat,/etc/passwd",
        "{shared}/a.dat\n/etc/passwd",
        "file:///etc/passwd",
        "relative/a.dat",
    ],
)
def test_input_files_are_checked_again_in_the_tms(tmp_path: Path, name: str) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "link-to-passwd").symlink_to("/etc/passwd")
    config = make_config(tmp_path, input_file_prefixes=(str(shared),))
    with pytest.raises(TaskforceSpecError, match="input file"):
        build_job_spec(config, pending("TF-in", input_files=[name.format(shared=shared)]), tmp_path / "x.jel")


def test_allowed_input_files_are_shipped(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "sub").mkdir(parents=True)
    config = make_config(tmp_path, input_file_prefixes=(str(shared),))
    files = ["osdf:///icecube/lut.dat", f"{shared}/./sub/../sub/a.dat", "https://example.org/b.dat"]
    spec, _ = build_job_spec(config, pending("TF-ok", input_files=files), tmp_path / "x.jel")
    shipped = spec.submit_dict["transfer_input_files"].split(",")
    assert shipped[:3] == ["osdf:///icecube/lut.dat", f"{shared}/sub/a.dat", "https://example.org/b.dat"]


@pytest.mark.parametrize(
    "field, value",
    [("worker_config", {"condor_requirements": "x == 1\nqueue 100"}), ("pilot_config", {"tag": "latest\n+Owner=x"})],
)
def test_submit_description_lines_cannot_be_split(tmp_path: Path, field: str, value: dict[str, str]) -> None:
    answer = pending("TF-split")
    answer["taskforce"][field].update(value)
    with pytest.raises(TaskforceSpecError, match="control characters"):
        build_job_spec(make_config(tmp_path), answer, tmp_path / "x.jel")


def _events(log: Path) -> list[tuple[int, int, int]]:
    if not log.exists():
        return []
    found = htcondor2.JobEventLog(str(log)).events(0)
    return [(int(e["EventTypeNumber"]), e["Cluster"], e.get("Proc", -1)) for e in found]


async def _wait_for_event(log: Path, event: tuple[int, int, int], within: float = 30.0) -> None:
    deadline = time.monotonic() + within  # a liveness bound, not a timing check
    while event not in _events(log):
        assert time.monotonic() < deadline, _events(log)
        await asyncio.sleep(0.1)


def _spec(config: TMSConfig, backend: LocalBackend, uuid: str) -> JobSpec:
    spec, _ = build_job_spec(config, pending(uuid), backend.job_event_log_path())
    return spec


@pytest.mark.parametrize(
    "poison",
    [
        {"pilot_env": {"K=1": "x"}},
        {"pilot_env": {"EWMS_PILOT_TASK_ARGS": "a\x00b"}},
        {"pilot_env": {"A B": "1"}},
    ],
)
async def test_a_poisoned_taskforce_is_refused_and_the_good_one_beside_it_completes(tmp_path: Path, poison) -> None:  # type: ignore[no-untyped-def]
    config = make_config(tmp_path)
    backend = LocalBackend(config.job_event_log_dir, config.state_dir, max_concurrent=1, pilot_command=OK_PILOT)
    try:
        bad = _spec(config, backend, "TF-bad")
        bad = dataclasses.replace(bad, pilot_env={**bad.pilot_env, **poison["pilot_env"]})
        for _ in range(4):  # four poisoned submissions used to take every slot for good
            with pytest.raises(BackendError, match="pilot environment"):
                await backend.submit(bad, 1)
        assert backend.n_running == 0
        good = await backend.submit(_spec(config, backend, "TF-good"), 1)
        await _wait_for_event(backend.job_event_log_path(), (TERMINATED, good.cluster_id, 0))
    finally:
        await backend.close()


@pytest.mark.parametrize("key", ["output", "error"])
async def test_a_job_that_cannot_start_is_held_and_releases_its_slot(tmp_path: Path, key: str) -> None:
    config = make_config(tmp_path)
    backend = LocalBackend(config.job_event_log_dir, config.state_dir, max_concurrent=1, pilot_command=OK_PILOT)
    try:
        bad = _spec(config, backend, "TF-bad")
        bad = dataclasses.replace(bad, submit_dict={**bad.submit_dict, key: f"{tmp_path}/out\x00put"})
        held = await backend.submit(bad, 1)
        log = backend.job_event_log_path()
        assert (HELD, held.cluster_id, 0) in _events(log) and backend.n_running == 0
        good = await backend.submit(_spec(config, backend, "TF-good"), 1)
        await _wait_for_event(log, (TERMINATED, good.cluster_id, 0))
    finally:
        await backend.close()
