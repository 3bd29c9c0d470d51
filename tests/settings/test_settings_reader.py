"""The one settings reader: types, defaults, bounds, choices, aliases and one ConfigError naming every bad variable."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ewms_settings import ConfigError, declared, load, setting, shell_words
from mqs_client.config import MQSConfig
from pilot.config import PilotConfig, ReportingConfig, load_reporting_config
from tms.config import TMSConfig
from wms.config import WMSConfig


@dataclass(frozen=True)
class Sample:
    """Every kind of setting the reader knows."""

    name: str = setting("S_NAME", "a required text")
    count: int = setting("S_COUNT", "an integer", 3, ge=1, le=10)
    ratio: float = setting("S_RATIO", "a number", 0.5, gt=0)
    grace: float = setting("S_GRACE", "a non-negative number", 1.0, ge=0)
    flag: bool = setting("S_FLAG", "a boolean", True)
    home: Path = setting("S_HOME", "a path", Path("/srv"), aliases=("S_OLD_HOME",))
    port: int | None = setting("S_PORT", "an optional port", None)
    mode: str = setting("S_MODE", "a choice", "fast", parse=str.lower, choices=("fast", "safe"))
    words: tuple[str, ...] = setting("S_WORDS", "shell words", (), parse=shell_words)
    extra: str = setting("S_EXTRA", "set but empty counts", "x", keeps_blank=True)


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(Sample, env)
    return info.value.problems


def test_typed_values_and_defaults() -> None:
    sample = load(Sample, {"S_NAME": " n ", "S_COUNT": "10", "S_RATIO": "2.5", "S_FLAG": "Off", "S_PORT": "9100"})
    assert (sample.name, sample.count, sample.ratio, sample.flag, sample.port) == ("n", 10, 2.5, False, 9100)
    assert (sample.grace, sample.home, sample.mode, sample.words, sample.extra) == (1.0, Path("/srv"), "fast", (), "x")


def test_blank_means_unset_unless_the_setting_keeps_blanks() -> None:
    sample = load(Sample, {"S_NAME": "n", "S_COUNT": "  ", "S_FLAG": "", "S_EXTRA": ""})
    assert (sample.count, sample.flag, sample.extra) == (3, True, "")


def test_aliases_optional_none_choices_and_parsers() -> None:
    env = {"S_NAME": "n", "S_OLD_HOME": "/old", "S_PORT": "None", "S_MODE": "SAFE", "S_WORDS": "a 'b c'"}
    sample = load(Sample, env)
    assert (sample.home, sample.port, sample.mode, sample.words) == (Path("/old"), None, "safe", ("a", "b c"))
    assert load(Sample, env | {"S_HOME": "/new"}).home == Path("/new")  # the main name wins
    assert load(Sample, env | {"S_RATIO": "None"}).ratio == 0.5  # a number written none takes its default


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("S_COUNT", "three", "S_COUNT='three' must be an integer"),
        ("S_COUNT", "0", "S_COUNT='0' must be at least 1"),
        ("S_COUNT", "11", "S_COUNT='11' must be at most 10"),
        ("S_RATIO", "0", "S_RATIO='0' must be positive"),
        ("S_RATIO", "nan", "S_RATIO='nan' must be a finite number"),
        ("S_RATIO", "1e400", "S_RATIO='1e400' must be a finite number"),
        ("S_GRACE", "-1", "S_GRACE='-1' must not be negative"),
        ("S_GRACE", "soon", "S_GRACE='soon' must be a number"),
        ("S_FLAG", "maybe", "S_FLAG='maybe' must be true or false"),
        ("S_FLAG", "2", "S_FLAG='2' must be true or false"),
        ("S_MODE", "slow", "S_MODE='slow' must be one of fast, safe"),
        ("S_WORDS", "'open", "S_WORDS=\"'open\" is not valid shell syntax: No closing quotation"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(name: str, raw: str, message: str) -> None:
    assert problems_of({"S_NAME": "n", name: raw}) == [message]


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of({"S_COUNT": "x", "S_FLAG": "perhaps", "S_MODE": "?"})
    assert problems == [
        "S_NAME is required",
        "S_COUNT='x' must be an integer",
        "S_FLAG='perhaps' must be true or false",
        "S_MODE='?' must be one of fast, safe",
    ]
    assert str(ConfigError(problems)).startswith("invalid settings:\n  - S_NAME is required\n  - ")


def test_one_config_error_for_every_component() -> None:
    import mqs_client
    import pilot.errors
    import tms.config
    import wms.config

    assert wms.config.ConfigError is tms.config.ConfigError is mqs_client.ConfigError is pilot.errors.ConfigError


@pytest.mark.parametrize(
    ("build", "env", "message"),
    [
        (WMSConfig.from_env, {"AUTH_SIGNING_KEY": "k", "REST_PORT": "http"}, "REST_PORT='http' must be an integer"),
        (WMSConfig.from_env, {"AUTH_SIGNING_KEY": "k", "WMS_RUN_DAEMONS": "sometimes"}, "WMS_RUN_DAEMONS='sometimes'"),
        (WMSConfig.from_env, {"AUTH_SIGNING_KEY": "k", "EWMS_CLUSTERS": "[1]"}, "EWMS_CLUSTERS='[1]' must map"),
        (WMSConfig.from_env, {"AUTH_SIGNING_KEY": "k", "EWMS_CLUSTERS_FILE": "/no/such"}, "EWMS_CLUSTERS_FILE="),
        (TMSConfig.from_env, {"EWMS_ADDRESS": "x", "EWMS_TOKEN": "t", "TMS_METRICS_PORT": "70000"}, "at most 65535"),
        (MQSConfig.from_env, {"MQS_ADDRESS": "x", "MQ_DELETE_GRACE_SECONDS": "-1"}, "must not be negative"),
        (load_reporting_config, {"EWMS_PILOT_HTCHIRP": "sure"}, "EWMS_PILOT_HTCHIRP='sure' must be true or false"),
        (load_reporting_config, {"EWMS_PILOT_HTCHIRP_DEST": "mail"}, "must be one of JOB_EVENT_LOG, JOB_ATTR"),
    ],
)
def test_components_refuse_bad_values_by_name(
    build: Callable[[dict[str, str]], object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        build(env)


def test_clusters_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "clusters.json"
    path.write_text('{"osg": "ap1.example.org"}')
    env = {"AUTH_SIGNING_KEY": "k", "EWMS_CLUSTERS_FILE": str(path)}
    assert WMSConfig.from_env(env).clusters == {"osg": "ap1.example.org"}
    assert WMSConfig.from_env(env | {"EWMS_CLUSTERS": '{"a": "b"}'}).clusters == {"a": "b"}


def test_every_component_declares_each_variable_once_with_a_description() -> None:
    for classes in ([WMSConfig], [MQSConfig], [TMSConfig], [PilotConfig, ReportingConfig]):
        names = [name for cls in classes for _, spec in declared(cls) for name in (spec.env, *spec.aliases)]
        assert len(names) == len(set(names)), names
        assert all(spec.doc for cls in classes for _, spec in declared(cls))
