"""The pilot's environment contract (``EWMS_PILOT_*``), read and validated once at start.

Single-variable settings are declared on :class:`PilotConfig` and :class:`ReportingConfig` (table:
Docs/settings/pilot.md); the task and queue variables, named after the task kind or queue direction, are read below.
Every problem found is reported at once in one :class:`~pilot.errors.ConfigError`. Values that later reach a
command line or a file path are validated here: environment variable names, paths (no whitespace or shell
metacharacters), file extensions, and the task arguments' shell syntax.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shlex
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ewms_settings import Setting, read, read_one, setting, shell_words
from pilot.errors import TASK_ERROR_KINDS, ConfigError

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# characters allowed in paths the pilot builds command lines and bind mounts from
SAFE_PATH_RE = re.compile(r"^[A-Za-z0-9_./+@-]+$")
FILE_EXT_RE = re.compile(r"^\.[A-Za-z0-9][A-Za-z0-9_.-]*$")
QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,255}$")
# container image references (registry/name:tag@digest, docker://..., paths); never starting with '-'
IMAGE_RE = re.compile(r"^[A-Za-z0-9_./:@+][A-Za-z0-9_./:@+=-]*$")

# upstream's single error class for container runs covers both of these kinds
ERROR_KIND_ALIASES = {"ContainerRunError": ("TaskExitError", "TaskTimeoutError")}
# container paths an external directory may not be mounted over (nor below)
FORBIDDEN_MOUNT_TARGETS = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/root", "/sbin", "/sys", "/usr",
    "/ewms-pilot-data",
)  # fmt: skip
APPTAINER_SANDBOX_MARKER = ".singularity.d"

LOGGER = logging.getLogger(__name__)

Platform = Literal["process", "docker", "apptainer"]
PLATFORMS: tuple[Platform, ...] = ("process", "docker", "apptainer")
ChirpDest = Literal["JOB_EVENT_LOG", "JOB_ATTR"]


@dataclass(frozen=True)
class BrokerAddress:
    """A broker address ``[SCHEME://][USER[:PASS]@]HOST[:PORT][/VHOST]`` (oms-mqclient's format)."""

    host: str
    port: int | None = None
    vhost: str = "/"
    username: str = ""
    password: str = ""
    tls: bool = False

    def __str__(self) -> str:
        scheme = "amqps" if self.tls else "amqp"
        user = f"{self.username}@" if self.username else ""
        port = f":{self.port}" if self.port else ""
        return f"{scheme}://{user}{self.host}{port}/{urllib.parse.quote(self.vhost, safe='')}"


@dataclass(frozen=True)
class QueueSpec:
    """One queue the pilot reads from or writes to, with its own token (sent as the AMQP password)."""

    name: str
    auth_token: str = field(repr=False)
    broker_type: str
    address: BrokerAddress


@dataclass(frozen=True)
class TaskSpec:
    """What to run: an image (or local environment), shell-syntax arguments, extra environment, a timeout."""

    image: str
    args: str
    env: Mapping[str, str]
    timeout: float | None

    @functools.cached_property
    def argv_template(self) -> tuple[str, ...]:
        """The arguments split like a POSIX shell would (placeholders are substituted per word later)."""
        return tuple(shlex.split(self.args))


def _safe_path(raw: str) -> str:
    path = os.path.abspath(raw)
    if not SAFE_PATH_RE.match(path):
        raise ValueError("may only hold letters, digits and '_./+@-' (no spaces or shell characters)")
    return path


def _data_dir(raw: str) -> Path:
    return Path(_safe_path(raw)) / "ewms-pilot-data"


def _ext(raw: str) -> str:
    ext = raw if raw.startswith(".") else f".{raw}"
    if not FILE_EXT_RE.match(ext):
        raise ValueError("is not a safe file extension (letters, digits, '_', '.', '-')")
    return ext


def _external_dirs(raw: str) -> tuple[str, ...]:
    dirs, issues = [], []
    for entry in (d.strip() for d in raw.split(",")):
        if not entry:
            continue
        if not entry.startswith("/"):
            issues.append(f"{entry!r} is not an absolute path")
            continue
        try:
            path = _safe_path(entry)
        except ValueError as exc:
            issues.append(f"{entry!r} {exc}")
            continue
        if path == "/" or any(path == f or path.startswith(f + "/") for f in FORBIDDEN_MOUNT_TARGETS):
            issues.append(f"{path!r} is a system path and cannot be mounted into tasks")
            continue
        dirs.append(path)
    if issues:
        raise ValueError("is refused: " + "; ".join(issues))
    return tuple(dirs)


def _shell_command(raw: str) -> str:
    try:
        shlex.split(raw)
    except ValueError as exc:
        raise ValueError(f"is not valid shell syntax: {exc}") from exc
    return raw


def _http_url(raw: str) -> str:
    if urllib.parse.urlsplit(raw).scheme not in ("http", "https"):
        raise ValueError("is not an http(s) URL")
    return raw


def _okay_errors(raw: str) -> frozenset[str]:
    kinds: set[str] = set()
    for word in re.split(r"[\s,;]+", raw.strip("[]")):
        word = word.strip("'\"")
        if not word:
            continue
        if word in ERROR_KIND_ALIASES:
            kinds.update(ERROR_KIND_ALIASES[word])
        elif word in TASK_ERROR_KINDS:
            kinds.add(word)
        else:
            known = ", ".join(sorted(TASK_ERROR_KINDS | ERROR_KIND_ALIASES.keys()))
            raise ValueError(f"names an unknown error kind {word!r} (known: {known})")
    return frozenset(kinds)


def _shm_size(raw: str) -> str:
    if not re.match(r"^[0-9]+[bkmgBKMG]?$", raw):
        raise ValueError("is not a size like 2g")
    return raw


def _build_workdir(raw: str) -> Path:
    return Path(_safe_path(raw))


@dataclass(frozen=True)
class ReportingConfig:
    """Where status reports go: HTChirp inside HTCondor and/or a local job event log."""

    htchirp: bool = setting("EWMS_PILOT_HTCHIRP", "send status reports through HTChirp (the TMS sets it)", False)
    htchirp_dest: ChirpDest = setting(
        "EWMS_PILOT_HTCHIRP_DEST", "HTChirp reports as job event log lines or as job attributes", "JOB_EVENT_LOG",
        parse=str.upper, choices=("JOB_EVENT_LOG", "JOB_ATTR"),
    )  # fmt: skip
    ratelimit_interval: float = setting(
        "EWMS_PILOT_HTCHIRP_RATELIMIT_INTERVAL", "s between two sends of counter and error updates", 60.0, ge=0
    )
    job_event_log: Path | None = setting(
        "_EWMS_PILOT_JOB_EVENT_LOG", "a local job event log reports are appended to (the local backend sets it)", None
    )
    cluster_id: int = setting("_EWMS_PILOT_CLUSTER_ID", "cluster id of those job event log lines", 0, ge=0)
    proc_id: int = setting("_EWMS_PILOT_PROC_ID", "proc id of those job event log lines", 0, ge=0)


@dataclass(frozen=True)
class PilotConfig:
    """Everything the pilot needs, validated."""

    task: TaskSpec
    init: TaskSpec | None
    incoming: tuple[QueueSpec, ...]
    outgoing: tuple[QueueSpec, ...]
    failed_events: QueueSpec | None
    platform: Platform = setting(
        "_EWMS_PILOT_CONTAINER_PLATFORM", "the task runner", parse=str.lower, choices=PLATFORMS,
        default_doc="`process` for an empty image or a plain local directory, else `docker`",
    )  # fmt: skip
    max_concurrent_tasks: int = setting(
        "EWMS_PILOT_MAX_CONCURRENT_TASKS",
        "tasks run at once; also the prefetch of every input queue (`EWMS_PILOT_PREFETCH` is ignored, with a warning)",
        1,
        ge=1,
    )
    timeout_first_message: float = setting(
        "EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE", "seconds to wait for the first event", 1.0, gt=0,
        default_doc="`EWMS_PILOT_TIMEOUT_QUEUE_INCOMING`",
    )  # fmt: skip
    timeout_incoming: float = setting(
        "EWMS_PILOT_TIMEOUT_QUEUE_INCOMING",
        "seconds without a new event (while a task slot is free) after which the pilot stops listening",
        1.0,
        gt=0,
    )
    token_refresh_command: str = setting(
        "EWMS_PILOT_QUEUE_TOKEN_REFRESH_COMMAND",
        "a command printing a fresh token for the queue named by its last argument (renewal before expiry)",
        "",
        parse=_shell_command,
    )
    token_refresh_url: str = setting(
        "EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL",
        "or: an http(s) URL (`{queue}` replaced by the queue name) answering `POST` with `{\"auth_token\": ...}`",
        "",
        parse=_http_url,
    )
    token_refresh_credential: str = setting(
        "EWMS_PILOT_QUEUE_TOKEN_REFRESH_CREDENTIAL", "bearer token sent to that URL", "", secret=True
    )
    stop_listening_on_task_error: bool = setting(
        "EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR",
        "true: stop listening after `EWMS_PILOT_MAX_TASK_FAILURES` failed tasks (upstream's rule); false: the"
        " failure-rate rule below",
        False,
    )
    max_task_failures: int = setting("EWMS_PILOT_MAX_TASK_FAILURES", "the N of the rule above", 1, ge=1)
    failure_window: int = setting(
        "EWMS_PILOT_FAILURE_WINDOW", "failure-rate rule: how many of the last finished tasks are looked at", 20, ge=1
    )
    failure_min_count: int = setting(
        "EWMS_PILOT_FAILURE_MIN_COUNT", "failure-rate rule: failures in the window needed to stop", 5, ge=1
    )
    failure_max_fraction: float = setting(
        "EWMS_PILOT_FAILURE_MAX_FRACTION",
        "failure-rate rule: stop when the failed share of the window is above this (1: never stop for failures)",
        0.5,
        gt=0,
        le=1,
    )
    okay_errors: frozenset[str] = setting(
        "EWMS_PILOT_OKAY_ERRORS",
        "error kinds that do not count towards N: `TaskExitError`, `TaskTimeoutError`, `TaskLaunchError`,"
        " `TaskInputError`, `TaskOutputError` (comma or space separated; upstream's `ContainerRunError` means the"
        " first two)",
        frozenset(),
        parse=_okay_errors,
    )
    quarantine_time: float = setting(
        "EWMS_PILOT_QUARANTINE_TIME",
        "seconds to sleep before exiting after a stop for failures, so HTCondor does not rematch the slot at once",
        0.0,
        ge=0,
    )
    reconnect_timeout: float = setting(
        "EWMS_PILOT_RECONNECT_TIMEOUT",
        "seconds a lost broker connection is retried (back-off 0.5 s doubling up to 15 s) before `FatalError`",
        300.0,
        gt=0,
    )
    data_dir: Path = setting(
        "EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST", "where `ewms-pilot-data/` is created", Path("ewms-pilot-data"),
        parse=_data_dir, default_doc="working directory",
    )  # fmt: skip
    infile_ext: str = setting(
        "EWMS_PILOT_INFILE_EXT", "input file extension; `.json` switches to JSON events", ".in", parse=_ext
    )
    outfile_ext: str = setting("EWMS_PILOT_OUTFILE_EXT", "output file extension", ".out", parse=_ext)
    external_directories: tuple[str, ...] = setting(
        "EWMS_PILOT_EXTERNAL_DIRECTORIES",
        "comma-separated absolute host directories mounted read-only at the same path in containers",
        (),
        parse=_external_dirs,
    )
    keep_all_task_files: bool = setting(
        "EWMS_PILOT_KEEP_ALL_TASK_FILES", "keep every event's directory (input, output, stdout, stderr)", False
    )
    dump_task_output: bool = setting("EWMS_PILOT_DUMP_TASK_OUTPUT", "log each task's stdout and stderr", False)
    docker_shm_size: str = setting("_EWMS_PILOT_DOCKER_SHM_SIZE", "`docker run --shm-size`", "", parse=_shm_size)
    apptainer_build_workdir: Path = setting(
        "_EWMS_PILOT_APPTAINER_BUILD_WORKDIR", "where sandboxes are built (and reused)", Path("/var/tmp"),
        parse=_build_workdir,
    )  # fmt: skip
    apptainer_image_directory_must_be_present: bool = setting(
        "_EWMS_PILOT_APPTAINER_IMAGE_DIRECTORY_MUST_BE_PRESENT",
        "false: build a sandbox from a non-directory image with `apptainer build --fix-perms --sandbox`",
        True,
    )
    reporting: ReportingConfig = ReportingConfig()

    @property
    def data_hub(self) -> Path:
        """Directory shared by the init task and every task (``{{DATA_HUB}}``)."""
        return self.data_dir / "data-hub"


def parse_broker_address(address: str) -> BrokerAddress:
    """Parse ``[SCHEME://][USER[:PASS]@]HOST[:PORT][/VHOST]``; the vhost is percent-decoded, ``/`` by default."""
    url = address.strip()
    if "://" not in url:
        url = "//" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("", "amqp", "amqps"):
        raise ValueError(f"unsupported scheme {parts.scheme!r} in broker address (use amqp or amqps)")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid port in broker address {address!r}") from exc
    if not parts.hostname:
        raise ValueError(f"no host in broker address {address!r}")
    vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        vhost=vhost,
        username=urllib.parse.unquote(parts.username or ""),
        password=urllib.parse.unquote(parts.password or ""),
        tls=parts.scheme == "amqps",
    )


def _text(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name, "").strip()


def _split_positional(environ: Mapping[str, str], problems: list[str], name: str, count: int) -> list[str]:
    """Split a ``;``-joined value into ``count`` positions; a single value applies to every queue."""
    values = [v.strip() for v in environ.get(name, "").split(";")]
    if len(values) == 1 and count > 1:
        return values * count
    if len(values) != count:
        problems.append(f"{name} has {len(values)} ';'-separated values but there are {count} queues")
        return [""] * count
    return values


def _read_queues(environ: Mapping[str, str], problems: list[str], direction: str) -> tuple[QueueSpec, ...]:
    prefix = f"EWMS_PILOT_QUEUE_{direction}"
    names = [n.strip() for n in _text(environ, prefix).split(";") if n.strip()]
    if not names:
        return ()
    tokens = _split_positional(environ, problems, f"{prefix}_AUTH_TOKEN", len(names))
    types = _split_positional(environ, problems, f"{prefix}_BROKER_TYPE", len(names))
    addresses = _split_positional(environ, problems, f"{prefix}_BROKER_ADDRESS", len(names))
    specs = []
    for name, token, btype, raw_address in zip(names, tokens, types, addresses, strict=True):
        if not QUEUE_NAME_RE.match(name):
            problems.append(f"{prefix}: queue name {name!r} has characters outside [A-Za-z0-9_.:@-]")
            continue
        if (btype or "rabbitmq").lower() != "rabbitmq":
            problems.append(f"{prefix}_BROKER_TYPE={btype!r}: only 'rabbitmq' is supported")
            continue
        if not raw_address:
            problems.append(f"{prefix}_BROKER_ADDRESS is missing for queue {name!r}")
            continue
        try:
            address = parse_broker_address(raw_address)
        except ValueError as exc:
            problems.append(f"{prefix}_BROKER_ADDRESS: {exc}")
            continue
        specs.append(QueueSpec(name=name, auth_token=token, broker_type="rabbitmq", address=address))
    return tuple(specs)


def _read_env_json(environ: Mapping[str, str], problems: list[str], name: str) -> dict[str, str]:
    raw = _text(environ, name)
    if not raw:
        return {}
    try:
        loaded = json.loads(raw)
    except json.JSONDecodeError as exc:
        problems.append(f"{name} is not valid JSON: {exc}")
        return {}
    if not isinstance(loaded, dict):
        problems.append(f"{name} must be a JSON object of variable names to values")
        return {}
    env: dict[str, str] = {}
    for key, value in loaded.items():
        if not ENV_NAME_RE.match(key):
            problems.append(f"{name}: {key!r} is not a valid environment variable name")
        elif isinstance(value, bool):
            env[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            env[key] = str(value)
        else:
            problems.append(f"{name}: value of {key!r} must be a string or number")
    return env


def _read_task(environ: Mapping[str, str], problems: list[str], kind: str, *timeout_aliases: str) -> TaskSpec:
    args = environ.get(f"EWMS_PILOT_{kind}_ARGS", "")
    try:
        shell_words(args)
    except ValueError as exc:
        problems.append(f"EWMS_PILOT_{kind}_ARGS {exc}")
        args = ""
    timeout_setting = Setting(f"EWMS_PILOT_{kind}_TIMEOUT", "task timeout", aliases=timeout_aliases, gt=0)
    _, timeout = read_one(environ, timeout_setting, float | None, problems)
    return TaskSpec(
        image=_text(environ, f"EWMS_PILOT_{kind}_IMAGE"),
        args=args,
        env=_read_env_json(environ, problems, f"EWMS_PILOT_{kind}_ENV_JSON"),
        timeout=timeout,
    )


def is_local_directory(image: str) -> bool:
    """True when ``image`` names an existing local directory."""
    return bool(image) and os.path.isdir(image)


def is_apptainer_sandbox(image: str) -> bool:
    """True when ``image`` is a directory holding an apptainer sandbox."""
    return bool(image) and os.path.isdir(os.path.join(image, APPTAINER_SANDBOX_MARKER))


def resolve_platform(requested: str, task_image: str) -> Platform:
    """Pick the runner: the requested one, else ``process`` for an empty image or a plain local directory."""
    if requested:
        for platform in PLATFORMS:
            if requested == platform:
                return platform
        raise ConfigError(f"_EWMS_PILOT_CONTAINER_PLATFORM={requested!r} is not one of {', '.join(PLATFORMS)}")
    if not task_image or (is_local_directory(task_image) and not is_apptainer_sandbox(task_image)):
        return "process"
    return "docker"


def _check_platform(problems: list[str], platform: Platform, task: TaskSpec, init: TaskSpec | None) -> None:
    """Check that the task (and init task) fit the runner."""
    specs = [("TASK", task)] + ([("INIT", init)] if init is not None else [])
    for kind, spec in specs:
        if platform == "process":
            if spec.image and not is_local_directory(spec.image):
                problems.append(
                    f"EWMS_PILOT_{kind}_IMAGE={spec.image!r}: the process runner needs an empty value or a "
                    "local directory (e.g. a venv); set _EWMS_PILOT_CONTAINER_PLATFORM for container images"
                )
            if not spec.args.strip():
                problems.append(f"EWMS_PILOT_{kind}_ARGS is empty: the process runner needs a command to run")
        elif spec.image and not IMAGE_RE.match(spec.image):
            problems.append(
                f"EWMS_PILOT_{kind}_IMAGE={spec.image!r}: an image may only hold [A-Za-z0-9_./:@+=-] "
                "and may not start with '-'"
            )
    if platform != "process" and not task.image:
        problems.append(f"EWMS_PILOT_TASK_IMAGE is empty: the {platform} runner needs an image")


def _fail_if(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems)


def load_reporting_config(environ: Mapping[str, str]) -> ReportingConfig:
    """Read only the reporting settings, so a FatalError can be reported even when the rest is invalid."""
    problems: list[str] = []
    values = read(ReportingConfig, environ, problems)
    _fail_if(problems)
    return ReportingConfig(**values)


def load_config(environ: Mapping[str, str]) -> PilotConfig:
    """Read and validate the whole environment contract; raise :class:`ConfigError` listing every problem."""
    problems: list[str] = []
    task = _read_task(environ, problems, "TASK", "EWMS_PILOT_SUBPROC_TIMEOUT")
    init = _read_task(environ, problems, "INIT")
    has_init = bool(init.image or init.args.strip())
    incoming = _read_queues(environ, problems, "INCOMING")
    outgoing = _read_queues(environ, problems, "OUTGOING")
    failed_events = _read_queues(environ, problems, "FAILED")
    if len(failed_events) > 1:
        problems.append("EWMS_PILOT_QUEUE_FAILED names more than one queue")
    if not incoming and not _text(environ, "EWMS_PILOT_QUEUE_INCOMING"):
        problems.append("EWMS_PILOT_QUEUE_INCOMING is not set: the pilot needs at least one input queue")
    if _text(environ, "EWMS_PILOT_PREFETCH"):
        LOGGER.warning("EWMS_PILOT_PREFETCH is ignored: the prefetch equals EWMS_PILOT_MAX_CONCURRENT_TASKS")

    values: dict[str, Any] = read(PilotConfig, environ, problems)
    values["platform"] = resolve_platform(values.get("platform", ""), task.image)
    _check_platform(problems, values["platform"], task, init if has_init else None)
    values.setdefault("timeout_first_message", values.get("timeout_incoming", 1.0))
    if "data_dir" not in values:
        try:
            values["data_dir"] = _data_dir(os.getcwd())
        except ValueError as exc:
            problems.append(f"working directory {os.getcwd()!r} {exc} (set EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST)")
    if values.get("token_refresh_command") and values.get("token_refresh_url"):
        problems.append("set EWMS_PILOT_QUEUE_TOKEN_REFRESH_COMMAND or EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL, not both")
    if values.get("token_refresh_url") and not values.get("token_refresh_credential"):
        problems.append("EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL needs EWMS_PILOT_QUEUE_TOKEN_REFRESH_CREDENTIAL")
    reporting = read(ReportingConfig, environ, problems)
    _fail_if(problems)
    return PilotConfig(
        task=task,
        init=init if has_init else None,
        incoming=incoming,
        outgoing=outgoing,
        failed_events=failed_events[0] if failed_events else None,
        reporting=ReportingConfig(**reporting),
        **values,
    )
