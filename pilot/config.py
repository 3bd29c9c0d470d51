"""The pilot's environment contract (``EWMS_PILOT_*``), read and validated once at start.

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
from typing import Literal

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


@dataclass(frozen=True)
class ReportingConfig:
    """Where status reports go: HTChirp inside HTCondor and/or a local job event log."""

    htchirp: bool = False
    htchirp_dest: ChirpDest = "JOB_EVENT_LOG"
    ratelimit_interval: float = 60.0
    job_event_log: Path | None = None
    cluster_id: int = 0
    proc_id: int = 0


@dataclass(frozen=True)
class PilotConfig:
    """Everything the pilot needs, validated."""

    task: TaskSpec
    init: TaskSpec | None
    incoming: tuple[QueueSpec, ...]
    outgoing: tuple[QueueSpec, ...]
    platform: Platform
    failed_events: QueueSpec | None = None
    token_refresh_command: str = ""
    token_refresh_url: str = ""
    token_refresh_credential: str = field(default="", repr=False)
    max_concurrent_tasks: int = 1
    timeout_first_message: float = 1.0
    timeout_incoming: float = 1.0
    stop_listening_on_task_error: bool = False
    max_task_failures: int = 1
    failure_window: int = 20
    failure_min_count: int = 5
    failure_max_fraction: float = 0.5
    okay_errors: frozenset[str] = frozenset()
    quarantine_time: float = 0.0
    reconnect_timeout: float = 300.0
    data_dir: Path = Path("ewms-pilot-data")
    infile_ext: str = ".in"
    outfile_ext: str = ".out"
    external_directories: tuple[str, ...] = ()
    keep_all_task_files: bool = False
    dump_task_output: bool = False
    docker_shm_size: str = ""
    apptainer_build_workdir: Path = Path("/var/tmp")
    apptainer_image_directory_must_be_present: bool = True
    reporting: ReportingConfig = ReportingConfig()

    @property
    def data_hub(self) -> Path:
        """Directory shared by the init task and every task (``{{DATA_HUB}}``)."""
        return self.data_dir / "data-hub"


_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off", ""}


class _Reader:
    """Reads typed values from an environment mapping and collects every problem instead of stopping."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def text(self, name: str, default: str = "") -> str:
        return self.environ.get(name, default).strip()

    def flag(self, name: str, default: bool) -> bool:
        raw = self.environ.get(name)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value not in _FALSE:
            self.problems.append(f"{name}={raw!r} is not a boolean (use true or false)")
        return False

    def number(self, name: str, default: float, *, allow_zero: bool = False) -> float:
        value = self.optional_number(name, allow_zero=allow_zero)
        return default if value is None else value

    def optional_number(self, name: str, *, allow_zero: bool = False) -> float | None:
        raw = self.text(name)
        if not raw or raw.lower() == "none":
            return None
        try:
            value = float(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not a number")
            return None
        if value < 0 or (value == 0 and not allow_zero):
            self.problems.append(f"{name}={raw!r} must be {'at least 0' if allow_zero else 'greater than 0'}")
            return None
        return value

    def integer(self, name: str, default: int, minimum: int = 1) -> int:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not an integer")
            return default
        if value < minimum:
            self.problems.append(f"{name}={raw!r} must be at least {minimum}")
            return default
        return value

    def fail_if_problems(self) -> None:
        if self.problems:
            raise ConfigError("invalid pilot environment:\n  - " + "\n  - ".join(self.problems))


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


def _split_positional(reader: _Reader, name: str, count: int) -> list[str]:
    """Split a ``;``-joined value into ``count`` positions; a single value applies to every queue."""
    values = [v.strip() for v in reader.environ.get(name, "").split(";")]
    if len(values) == 1 and count > 1:
        return values * count
    if len(values) != count:
        reader.problems.append(f"{name} has {len(values)} ';'-separated values but there are {count} queues")
        return [""] * count
    return values


def _read_queues(reader: _Reader, direction: str) -> tuple[QueueSpec, ...]:
    prefix = f"EWMS_PILOT_QUEUE_{direction}"
    names = [n.strip() for n in reader.text(prefix).split(";") if n.strip()]
    if not names:
        return ()
    tokens = _split_positional(reader, f"{prefix}_AUTH_TOKEN", len(names))
    types = _split_positional(reader, f"{prefix}_BROKER_TYPE", len(names))
    addresses = _split_positional(reader, f"{prefix}_BROKER_ADDRESS", len(names))
    specs = []
    for name, token, btype, raw_address in zip(names, tokens, types, addresses, strict=True):
        if not QUEUE_NAME_RE.match(name):
            reader.problems.append(f"{prefix}: queue name {name!r} has characters outside [A-Za-z0-9_.:@-]")
            continue
        if (btype or "rabbitmq").lower() != "rabbitmq":
            reader.problems.append(f"{prefix}_BROKER_TYPE={btype!r}: only 'rabbitmq' is supported")
            continue
        if not raw_address:
            reader.problems.append(f"{prefix}_BROKER_ADDRESS is missing for queue {name!r}")
            continue
        try:
            address = parse_broker_address(raw_address)
        except ValueError as exc:
            reader.problems.append(f"{prefix}_BROKER_ADDRESS: {exc}")
            continue
        specs.append(QueueSpec(name=name, auth_token=token, broker_type="rabbitmq", address=address))
    return tuple(specs)


def _read_token_refresh(reader: _Reader) -> tuple[str, str, str]:
    """The command, or the URL and its credential, that give fresh queue tokens."""
    command = reader.text("EWMS_PILOT_QUEUE_TOKEN_REFRESH_COMMAND")
    url = reader.text("EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL")
    credential = reader.text("EWMS_PILOT_QUEUE_TOKEN_REFRESH_CREDENTIAL")
    try:
        shlex.split(command)
    except ValueError as exc:
        reader.problems.append(f"EWMS_PILOT_QUEUE_TOKEN_REFRESH_COMMAND is not valid shell syntax: {exc}")
    if command and url:
        reader.problems.append(
            "set EWMS_PILOT_QUEUE_TOKEN_REFRESH_COMMAND or EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL, not both"
        )
    if url and urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        reader.problems.append(f"EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL={url!r} is not an http(s) URL")
    if url and not credential:
        reader.problems.append("EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL needs EWMS_PILOT_QUEUE_TOKEN_REFRESH_CREDENTIAL")
    return command, url, credential


def _read_env_json(reader: _Reader, name: str) -> dict[str, str]:
    raw = reader.text(name)
    if not raw:
        return {}
    try:
        loaded = json.loads(raw)
    except json.JSONDecodeError as exc:
        reader.problems.append(f"{name} is not valid JSON: {exc}")
        return {}
    if not isinstance(loaded, dict):
        reader.problems.append(f"{name} must be a JSON object of variable names to values")
        return {}
    env: dict[str, str] = {}
    for key, value in loaded.items():
        if not ENV_NAME_RE.match(key):
            reader.problems.append(f"{name}: {key!r} is not a valid environment variable name")
        elif isinstance(value, bool):
            env[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            env[key] = str(value)
        else:
            reader.problems.append(f"{name}: value of {key!r} must be a string or number")
    return env


def _read_task(reader: _Reader, kind: str, timeout_names: tuple[str, ...]) -> TaskSpec:
    args = reader.environ.get(f"EWMS_PILOT_{kind}_ARGS", "")
    try:
        shlex.split(args)
    except ValueError as exc:
        reader.problems.append(f"EWMS_PILOT_{kind}_ARGS is not valid shell syntax: {exc}")
        args = ""
    timeout = None
    for timeout_name in timeout_names:
        timeout = reader.optional_number(timeout_name)
        if timeout is not None:
            break
    return TaskSpec(
        image=reader.text(f"EWMS_PILOT_{kind}_IMAGE"),
        args=args,
        env=_read_env_json(reader, f"EWMS_PILOT_{kind}_ENV_JSON"),
        timeout=timeout,
    )


def _read_ext(reader: _Reader, name: str, default: str) -> str:
    raw = reader.text(name, default)
    ext = raw if raw.startswith(".") else f".{raw}"
    if not FILE_EXT_RE.match(ext):
        reader.problems.append(f"{name}={raw!r} is not a safe file extension (letters, digits, '_', '.', '-')")
        return default
    return ext


def _safe_path(reader: _Reader, name: str, raw: str) -> str:
    path = os.path.abspath(raw)
    if not SAFE_PATH_RE.match(path):
        reader.problems.append(
            f"{name}={raw!r}: paths may only hold letters, digits and '_./+@-' (no spaces or shell characters)"
        )
    return path


def _read_external_dirs(reader: _Reader) -> tuple[str, ...]:
    name = "EWMS_PILOT_EXTERNAL_DIRECTORIES"
    dirs = []
    for raw in (d.strip() for d in reader.text(name).split(",")):
        if not raw:
            continue
        if not raw.startswith("/"):
            reader.problems.append(f"{name}: {raw!r} is not an absolute path")
            continue
        path = _safe_path(reader, name, raw)
        if path == "/" or any(path == f or path.startswith(f + "/") for f in FORBIDDEN_MOUNT_TARGETS):
            reader.problems.append(f"{name}: {path!r} is a system path and cannot be mounted into tasks")
            continue
        dirs.append(path)
    return tuple(dirs)


def _read_okay_errors(reader: _Reader) -> frozenset[str]:
    kinds: set[str] = set()
    for word in re.split(r"[\s,;]+", reader.text("EWMS_PILOT_OKAY_ERRORS").strip("[]")):
        word = word.strip("'\"")
        if not word:
            continue
        if word in ERROR_KIND_ALIASES:
            kinds.update(ERROR_KIND_ALIASES[word])
        elif word in TASK_ERROR_KINDS:
            kinds.add(word)
        else:
            known = ", ".join(sorted(TASK_ERROR_KINDS | ERROR_KIND_ALIASES.keys()))
            reader.problems.append(f"EWMS_PILOT_OKAY_ERRORS: unknown error kind {word!r} (known: {known})")
    return frozenset(kinds)


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


def _read_platform(reader: _Reader, task: TaskSpec, init: TaskSpec | None) -> Platform:
    """Select the runner and check that the task (and init task) fit it."""
    try:
        platform = resolve_platform(reader.text("_EWMS_PILOT_CONTAINER_PLATFORM").lower(), task.image)
    except ConfigError as exc:
        reader.problems.append(str(exc))
        return "process"
    specs = [("TASK", task)] + ([("INIT", init)] if init is not None else [])
    for kind, spec in specs:
        if platform == "process":
            if spec.image and not is_local_directory(spec.image):
                reader.problems.append(
                    f"EWMS_PILOT_{kind}_IMAGE={spec.image!r}: the process runner needs an empty value or a "
                    "local directory (e.g. a venv); set _EWMS_PILOT_CONTAINER_PLATFORM for container images"
                )
            if not spec.args.strip():
                reader.problems.append(f"EWMS_PILOT_{kind}_ARGS is empty: the process runner needs a command to run")
        elif spec.image and not IMAGE_RE.match(spec.image):
            reader.problems.append(
                f"EWMS_PILOT_{kind}_IMAGE={spec.image!r}: an image may only hold [A-Za-z0-9_./:@+=-] "
                "and may not start with '-'"
            )
    if platform != "process" and not task.image:
        reader.problems.append(f"EWMS_PILOT_TASK_IMAGE is empty: the {platform} runner needs an image")
    return platform


def _read_reporting(reader: _Reader) -> ReportingConfig:
    dest = reader.text("EWMS_PILOT_HTCHIRP_DEST", "JOB_EVENT_LOG").upper()
    if dest not in ("JOB_EVENT_LOG", "JOB_ATTR"):
        reader.problems.append(f"EWMS_PILOT_HTCHIRP_DEST={dest!r} must be JOB_EVENT_LOG or JOB_ATTR")
    jel = reader.text("_EWMS_PILOT_JOB_EVENT_LOG")
    return ReportingConfig(
        htchirp=reader.flag("EWMS_PILOT_HTCHIRP", False),
        htchirp_dest="JOB_ATTR" if dest == "JOB_ATTR" else "JOB_EVENT_LOG",
        ratelimit_interval=reader.number("EWMS_PILOT_HTCHIRP_RATELIMIT_INTERVAL", 60.0, allow_zero=True),
        job_event_log=Path(jel) if jel else None,
        cluster_id=reader.integer("_EWMS_PILOT_CLUSTER_ID", 0, minimum=0),
        proc_id=reader.integer("_EWMS_PILOT_PROC_ID", 0, minimum=0),
    )


def load_reporting_config(environ: Mapping[str, str]) -> ReportingConfig:
    """Read only the reporting settings, so a FatalError can be reported even when the rest is invalid."""
    reader = _Reader(environ)
    config = _read_reporting(reader)
    reader.fail_if_problems()
    return config


def load_config(environ: Mapping[str, str]) -> PilotConfig:
    """Read and validate the whole environment contract; raise :class:`ConfigError` listing every problem."""
    reader = _Reader(environ)
    task = _read_task(reader, "TASK", ("EWMS_PILOT_TASK_TIMEOUT", "EWMS_PILOT_SUBPROC_TIMEOUT"))
    init = _read_task(reader, "INIT", ("EWMS_PILOT_INIT_TIMEOUT",))
    has_init = bool(init.image or init.args.strip())
    incoming = _read_queues(reader, "INCOMING")
    outgoing = _read_queues(reader, "OUTGOING")
    failed_events = _read_queues(reader, "FAILED")
    if len(failed_events) > 1:
        reader.problems.append("EWMS_PILOT_QUEUE_FAILED names more than one queue")
    token_refresh_command, token_refresh_url, token_refresh_credential = _read_token_refresh(reader)
    if not incoming and not reader.text("EWMS_PILOT_QUEUE_INCOMING"):
        reader.problems.append("EWMS_PILOT_QUEUE_INCOMING is not set: the pilot needs at least one input queue")

    platform = _read_platform(reader, task, init if has_init else None)
    timeout_incoming = reader.number("EWMS_PILOT_TIMEOUT_QUEUE_INCOMING", 1.0)
    if reader.text("EWMS_PILOT_PREFETCH"):
        LOGGER.warning("EWMS_PILOT_PREFETCH is ignored: the prefetch equals EWMS_PILOT_MAX_CONCURRENT_TASKS")
    parent = reader.text("EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST") or os.getcwd()

    config = PilotConfig(
        task=task,
        init=init if has_init else None,
        incoming=incoming,
        outgoing=outgoing,
        platform=platform,
        failed_events=failed_events[0] if failed_events else None,
        token_refresh_command=token_refresh_command,
        token_refresh_url=token_refresh_url,
        token_refresh_credential=token_refresh_credential,
        max_concurrent_tasks=reader.integer("EWMS_PILOT_MAX_CONCURRENT_TASKS", 1),
        timeout_first_message=reader.number("EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE", timeout_incoming),
        timeout_incoming=timeout_incoming,
        stop_listening_on_task_error=reader.flag("EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR", False),
        max_task_failures=reader.integer("EWMS_PILOT_MAX_TASK_FAILURES", 1),
        failure_window=reader.integer("EWMS_PILOT_FAILURE_WINDOW", 20),
        failure_min_count=reader.integer("EWMS_PILOT_FAILURE_MIN_COUNT", 5),
        failure_max_fraction=reader.number("EWMS_PILOT_FAILURE_MAX_FRACTION", 0.5),
        okay_errors=_read_okay_errors(reader),
        quarantine_time=reader.number("EWMS_PILOT_QUARANTINE_TIME", 0.0, allow_zero=True),
        reconnect_timeout=reader.number("EWMS_PILOT_RECONNECT_TIMEOUT", 300.0),
        data_dir=Path(_safe_path(reader, "EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST", parent)) / "ewms-pilot-data",
        infile_ext=_read_ext(reader, "EWMS_PILOT_INFILE_EXT", ".in"),
        outfile_ext=_read_ext(reader, "EWMS_PILOT_OUTFILE_EXT", ".out"),
        external_directories=_read_external_dirs(reader),
        keep_all_task_files=reader.flag("EWMS_PILOT_KEEP_ALL_TASK_FILES", False),
        dump_task_output=reader.flag("EWMS_PILOT_DUMP_TASK_OUTPUT", False),
        docker_shm_size=reader.text("_EWMS_PILOT_DOCKER_SHM_SIZE"),
        apptainer_build_workdir=Path(
            _safe_path(
                reader,
                "_EWMS_PILOT_APPTAINER_BUILD_WORKDIR",
                reader.text("_EWMS_PILOT_APPTAINER_BUILD_WORKDIR", "/var/tmp"),
            )
        ),
        apptainer_image_directory_must_be_present=reader.flag(
            "_EWMS_PILOT_APPTAINER_IMAGE_DIRECTORY_MUST_BE_PRESENT", True
        ),
        reporting=_read_reporting(reader),
    )
    if config.failure_max_fraction > 1:
        reader.problems.append("EWMS_PILOT_FAILURE_MAX_FRACTION must be at most 1 (1: never stop for failures)")
    if config.docker_shm_size and not re.match(r"^[0-9]+[bkmgBKMG]?$", config.docker_shm_size):
        reader.problems.append(f"_EWMS_PILOT_DOCKER_SHM_SIZE={config.docker_shm_size!r} is not a size like 2g")
    reader.fail_if_problems()
    return config
