"""Settings from the environment, and the daemon's clean start and stop (SIGTERM) as a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tms_fakes import TOKEN, FakeWMS

from ewms_dev.processes import free_port, until
from ewms_dev.service_env import tms_env
from tms.config import CONTAINER_REQUIREMENTS, ConfigError, TMSConfig, parse_extra_pilot_env


def test_defaults_and_overrides() -> None:
    config = TMSConfig.from_env({"EWMS_ADDRESS": "https://wms.example.org/", "EWMS_TOKEN": "t"})
    assert config.ewms_address == "https://wms.example.org"
    assert config.backend == "htcondor" and config.pilot_launch == "container"
    assert config.condor_requirements == CONTAINER_REQUIREMENTS
    assert config.job_event_log_dir == Path("/var/tmp/ewms-tms/job-event-logs")
    assert (config.watcher_interval, config.poll_interval, config.n_top_task_errors) == (0.25, 1.0, 10)
    assert config.local_max_concurrent_jobs == (os.cpu_count() or 2)
    assert config.metrics_port is None
    config = TMSConfig.from_env(
        {
            "EWMS_ADDRESS": "http://localhost:8080",
            "EWMS_TOKEN_URL": "https://idp/token",
            "EWMS_CLIENT_ID": "tms",
            "EWMS_CLIENT_SECRET": "s",
            "TMS_SCHEDD": "ap1.example.org",
            "TMS_BACKEND": "local",
            "TMS_STATE_DIR": "/srv/tms",
            "TMS_PILOT_LAUNCH": "executable",
            "TMS_WATCHER_INTERVAL": "0.5",
            "TMS_LOCAL_MAX_CONCURRENT_JOBS": "3",
            "TMS_LOCAL_PILOT_COMMAND": "/opt/venv/bin/python -m pilot",
            "TMS_ENV_VARS_AND_VALS_ADD_TO_PILOT": "EWMS_PILOT_CL_LOG=DEBUG _EWMS_PILOT_BUILD_DIR='/srv/tmp dir'",
            "TMS_METRICS_PORT": "9100",
        }
    )
    assert (config.schedd, config.backend, config.state_dir) == ("ap1.example.org", "local", Path("/srv/tms"))
    assert config.job_event_log_dir == Path("/srv/tms/job-event-logs")
    assert config.condor_requirements == "" and config.watcher_interval == 0.5
    assert config.local_max_concurrent_jobs == 3 and config.metrics_port == 9100
    assert config.local_pilot_command == ("/opt/venv/bin/python", "-m", "pilot")
    assert config.extra_pilot_env == {"EWMS_PILOT_CL_LOG": "DEBUG", "_EWMS_PILOT_BUILD_DIR": "/srv/tmp dir"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "EWMS_ADDRESS is required"),
        ({"EWMS_ADDRESS": "http://x"}, "set EWMS_TOKEN"),
        ({"EWMS_ADDRESS": "http://x", "EWMS_TOKEN": "t", "TMS_BACKEND": "slurm"}, "TMS_BACKEND"),
        ({"EWMS_ADDRESS": "http://x", "EWMS_TOKEN": "t", "TMS_WATCHER_INTERVAL": "fast"}, "must be a number"),
        ({"EWMS_ADDRESS": "http://x", "EWMS_TOKEN": "t", "JOB_EVENT_LOG_MODIFICATION_EXPIRY_LONG": "10"}, ">="),
    ],
)
def test_invalid_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TMSConfig.from_env(env)


def test_extra_pilot_env_only_takes_pilot_variables() -> None:
    with pytest.raises(ConfigError, match="not a pilot variable"):
        parse_extra_pilot_env("PATH=/evil")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_extra_pilot_env("EWMS_PILOT_X")


async def test_daemon_starts_serves_metrics_and_stops_on_sigterm(fake_wms: FakeWMS, tmp_path: Path) -> None:
    metrics_port = free_port()
    env = {
        **os.environ,
        **tms_env(fake_wms.url, TOKEN, "ap.test", tmp_path / "state"),
        "TMS_POLL_INTERVAL": "0.2",
        "TMS_METRICS_PORT": str(metrics_port),
    }
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tms", env=env, stderr=asyncio.subprocess.PIPE)
    await until(lambda: fake_wms.calls_to("pending-stopper"), what="the TMS polling the WMS")
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    assert "ewms_tms_job_events_read_total" in metrics
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    log = err.decode()
    assert proc.returncode == 0, log
    assert "TMS for schedd ap.test: backend local" in log and "TMS stopped" in log
    assert (tmp_path / "state" / "job-event-logs").is_dir()


def test_bad_configuration_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tms"], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True
    )
    assert result.returncode == 2 and "EWMS_ADDRESS is required" in result.stderr
