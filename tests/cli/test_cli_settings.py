"""Where the URL and token come from, and the exit codes of authentication and network failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import RunCLI

from ewms_dev.processes import free_port
from wms.cli.main import main


async def test_flags_then_environment_then_config_file(
    ewms: RunCLI,
    wms_server,
    token: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"url": wms_server.url, "token": token}))
    monkeypatch.setenv("EWMS_CONFIG", str(config))
    run = await ewms("query", "workflows", connect=False)
    assert run.code == 0 and run.err == "0 results\n", run.err

    monkeypatch.setenv("EWMS_TOKEN", "not-a-token")  # the environment wins over the file
    run = await ewms("query", "workflows", connect=False)
    assert run.code == 1 and run.err.startswith("error: 401 Unauthorized: ")
    assert run.err.rstrip().endswith("(check --token / EWMS_TOKEN)")

    run = await ewms("query", "workflows", "--token", token, connect=False)  # a flag wins, even after the command
    assert run.code == 0, run.err

    monkeypatch.setenv("EWMS_URL", f"http://127.0.0.1:{free_port()}")
    run = await ewms("--url", wms_server.url, "query", "workflows", "--token", token, connect=False)
    assert run.code == 0, run.err


def test_no_token_is_a_usage_error_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "http://127.0.0.1:9", "status", "WF-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: no WMS token: pass --token, set EWMS_TOKEN, put "token" in ')
    assert err.endswith(", or run `ewms login`\n")


def test_unreadable_config_file_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.json"
    config.write_text("{oops")
    monkeypatch.setenv("EWMS_CONFIG", str(config))
    assert main(["status", "WF-1"]) == 2
    assert capsys.readouterr().err.startswith(f"error: cannot read config file {config}: ")


@pytest.mark.parametrize("url", ["localhost:8080", "http://", "ftp://host/"])
def test_bad_url_is_a_usage_error(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", url, "--token", "t", "status", "WF-1"]) == 2
    assert capsys.readouterr().err.startswith(f"error: invalid WMS URL {url!r}: ")


def test_unreachable_server_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["--url", url, "--token", "t", "status", "WF-1"]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach the WMS at {url}: ")
    assert err.endswith(
        "\nhint: nothing answers there; start a dev stack with `ewms dev up` (then source .ewms-dev/env.sh)\n"
    )

    remote = "http://wms.invalid:8080"  # not this machine: no dev-stack hint
    assert main(["--url", remote, "--token", "t", "status", "WF-1"]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach the WMS at {remote}: ") and "ewms dev up" not in err


def test_an_invalid_environment_variable_is_a_usage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EWMS_LOG_LEVEL", "chatty")
    assert main(["--url", "http://127.0.0.1:9", "--token", "t", "status", "WF-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: EWMS_LOG_LEVEL='chatty' must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"), err
