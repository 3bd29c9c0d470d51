"""The environment contract: parsing, ';'-joined queues, defaults, runner selection and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilot.config import BrokerAddress, load_config, parse_broker_address, resolve_platform
from pilot.errors import ConfigError

BASE = {
    "EWMS_PILOT_TASK_ARGS": "cp {{INFILE}} {{OUTFILE}}",
    "EWMS_PILOT_QUEUE_INCOMING": "qin",
    "EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN": "tin",
    "EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE": "rabbitmq",
    "EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS": "localhost:5672",
    "EWMS_PILOT_QUEUE_OUTGOING": "qout",
    "EWMS_PILOT_QUEUE_OUTGOING_AUTH_TOKEN": "tout",
    "EWMS_PILOT_QUEUE_OUTGOING_BROKER_TYPE": "rabbitmq",
    "EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS": "localhost:5672",
}


def config_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(env)
    return str(info.value)


def test_defaults_follow_the_upstream_pilot(tmp_path: Path) -> None:
    config = load_config({**BASE, "EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST": str(tmp_path)})
    assert config.platform == "process"
    assert config.max_concurrent_tasks == 1
    assert config.timeout_incoming == 1.0 and config.timeout_first_message == 1.0
    assert not config.stop_listening_on_task_error and config.max_task_failures == 1  # a failure rate stops it
    assert (config.failure_window, config.failure_min_count, config.failure_max_fraction) == (20, 5, 0.5)
    assert config.failed_events is None and not config.token_refresh_command and not config.token_refresh_url
    assert config.infile_ext == ".in" and config.outfile_ext == ".out"
    assert config.task.timeout is None and config.init is None
    assert config.data_dir == tmp_path / "ewms-pilot-data"
    assert config.reporting.ratelimit_interval == 60.0 and not config.reporting.htchirp


def test_semicolon_joined_queues_keep_their_positions() -> None:
    env = {
        **BASE,
        "EWMS_PILOT_QUEUE_INCOMING": "a;b",
        "EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN": "ta;tb",
        "EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE": "rabbitmq",  # one value applies to every queue
        "EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS": "user@h1:1000;amqps://h2/vh",
    }
    incoming = load_config(env).incoming
    assert [(q.name, q.auth_token) for q in incoming] == [("a", "ta"), ("b", "tb")]
    assert incoming[0].address == BrokerAddress(host="h1", port=1000, username="user")
    assert incoming[1].address == BrokerAddress(host="h2", vhost="vh", tls=True)
    assert "ta" not in repr(incoming[0])  # tokens stay out of logs


def test_mismatched_positions_are_rejected() -> None:
    env = {**BASE, "EWMS_PILOT_QUEUE_INCOMING": "a;b;c", "EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN": "ta;tb"}
    assert "EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN has 2 ';'-separated values but there are 3 queues" in config_error(env)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("localhost", BrokerAddress(host="localhost")),
        ("amqp://u:p@host:5673/%2F", BrokerAddress(host="host", port=5673, username="u", password="p")),
        ("host/my-vhost", BrokerAddress(host="host", vhost="my-vhost")),
    ],
)
def test_broker_address_format_matches_oms_mqclient(address: str, expected: BrokerAddress) -> None:
    assert parse_broker_address(address) == expected


def test_every_problem_is_reported_at_once() -> None:
    env = {
        **BASE,
        "EWMS_PILOT_TASK_ENV_JSON": '{"OK": 1, "bad-name": "x", "$(rm)": "y"}',
        "EWMS_PILOT_MAX_CONCURRENT_TASKS": "0",
        "EWMS_PILOT_OKAY_ERRORS": "TaskExitError,NoSuchError",
        "EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST": "/tmp/a b;rm",
        "EWMS_PILOT_INFILE_EXT": ".in;x",
        "EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE": "pulsar",
        "EWMS_PILOT_EXTERNAL_DIRECTORIES": "/etc/secrets,relative",
        "EWMS_PILOT_TASK_ARGS": "echo 'unterminated",
    }
    message = config_error(env)
    for expected in (
        "'bad-name' is not a valid environment variable name",
        "'$(rm)' is not a valid environment variable name",
        "EWMS_PILOT_MAX_CONCURRENT_TASKS='0' must be at least 1",
        "unknown error kind 'NoSuchError'",
        "EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST='/tmp/a b;rm'",
        "EWMS_PILOT_INFILE_EXT='.in;x'",
        "only 'rabbitmq' is supported",
        "'/etc/secrets' is a system path",
        "'relative' is not an absolute path",
        "EWMS_PILOT_TASK_ARGS is not valid shell syntax",
    ):
        assert expected in message


def test_okay_errors_accept_upstream_names() -> None:
    config = load_config({**BASE, "EWMS_PILOT_OKAY_ERRORS": "['ContainerRunError']"})
    assert config.okay_errors == {"TaskExitError", "TaskTimeoutError"}


def test_runner_selection(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    sandbox = tmp_path / "sandbox"
    (sandbox / ".singularity.d").mkdir(parents=True)
    assert resolve_platform("", "") == "process"
    assert resolve_platform("", str(venv)) == "process"
    assert resolve_platform("", str(sandbox)) == "docker"  # upstream default for anything but a plain dir
    assert resolve_platform("", "python:3.12") == "docker"
    assert resolve_platform("apptainer", str(sandbox)) == "apptainer"
    with pytest.raises(ConfigError, match="not one of process, docker, apptainer"):
        resolve_platform("podman", "")


def test_process_runner_rejects_a_container_image() -> None:
    env = {**BASE, "EWMS_PILOT_TASK_IMAGE": "python:3.12", "_EWMS_PILOT_CONTAINER_PLATFORM": "process"}
    assert "the process runner needs an empty value or a local directory" in config_error(env)


def test_container_image_may_not_look_like_an_option() -> None:
    env = {**BASE, "EWMS_PILOT_TASK_IMAGE": "--privileged", "_EWMS_PILOT_CONTAINER_PLATFORM": "docker"}
    assert "may not start with '-'" in config_error(env)


def test_input_queue_is_required() -> None:
    env = {k: v for k, v in BASE.items() if not k.startswith("EWMS_PILOT_QUEUE_INCOMING")}
    assert "EWMS_PILOT_QUEUE_INCOMING is not set" in config_error(env)


def test_legacy_timeout_name_and_init_task() -> None:
    env = {
        **BASE,
        "EWMS_PILOT_SUBPROC_TIMEOUT": "30",
        "EWMS_PILOT_INIT_ARGS": "sh -c 'echo hi'",
        "EWMS_PILOT_INIT_TIMEOUT": "5",
        "EWMS_PILOT_INIT_ENV_JSON": '{"FLAG": true}',
    }
    config = load_config(env)
    assert config.task.timeout == 30.0
    assert config.init is not None and config.init.timeout == 5.0 and dict(config.init.env) == {"FLAG": "true"}


def test_failed_events_queue_and_token_refresh_settings() -> None:
    env = {
        **BASE,
        "EWMS_PILOT_QUEUE_FAILED": "qfail",
        "EWMS_PILOT_QUEUE_FAILED_AUTH_TOKEN": "tfail",
        "EWMS_PILOT_QUEUE_FAILED_BROKER_TYPE": "rabbitmq",
        "EWMS_PILOT_QUEUE_FAILED_BROKER_ADDRESS": "localhost:5672/wf-1",
        "EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL": "https://wms.example/v0/queues/{queue}/token",
        "EWMS_PILOT_QUEUE_TOKEN_REFRESH_CREDENTIAL": "secret",
    }
    config = load_config(env)
    assert config.failed_events is not None and config.failed_events.name == "qfail"
    assert config.failed_events.address == BrokerAddress(host="localhost", port=5672, vhost="wf-1")
    assert config.token_refresh_url.endswith("{queue}/token") and "secret" not in repr(config)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL": "https://wms/x"}, "needs EWMS_PILOT_QUEUE_TOKEN_REFRESH_CREDENTIAL"),
        ({"EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL": "file:///etc/passwd"}, "is not an http(s) URL"),
        (
            {"EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL": "https://wms/x", "EWMS_PILOT_QUEUE_TOKEN_REFRESH_COMMAND": "mint"},
            "not both",
        ),
        ({"EWMS_PILOT_QUEUE_TOKEN_REFRESH_COMMAND": "mint 'open"}, "is not valid shell syntax"),
        ({"EWMS_PILOT_FAILURE_MAX_FRACTION": "1.5"}, "must be at most 1"),
        ({"EWMS_PILOT_FAILURE_WINDOW": "0"}, "EWMS_PILOT_FAILURE_WINDOW='0' must be at least 1"),
        (
            {"EWMS_PILOT_QUEUE_FAILED": "a;b", "EWMS_PILOT_QUEUE_FAILED_BROKER_ADDRESS": "h"},
            "EWMS_PILOT_QUEUE_FAILED names more than one queue",
        ),
    ],
)
def test_bad_failure_and_token_settings_are_refused(overrides: dict[str, str], problem: str) -> None:
    assert problem in config_error({**BASE, **overrides})
