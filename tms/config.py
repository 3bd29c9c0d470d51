"""TMS settings, read once from the environment into a frozen dataclass (every variable is listed in README.md)."""

from __future__ import annotations

import os
import shlex
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_PILOT_IMAGE_BASE = (
    "/cvmfs/icecube.opensciencegrid.org/containers/ewms/observation-management-service/ewms-pilot"
)
CONTAINER_REQUIREMENTS = (
    "ifthenelse(!isUndefined(HAS_SINGULARITY), HAS_SINGULARITY, HasSingularity)"
    " && HAS_CVMFS_icecube_opensciencegrid_org && HasUserNamespaces =?= true"
)
PILOT_ENV_PREFIXES = ("EWMS_PILOT_", "_EWMS_PILOT_")
MAX_LOG_TAIL_BYTES = 65536  # the WMS keeps at most this many characters per output tail


class ConfigError(ValueError):
    """A setting is missing or invalid."""


@dataclass(frozen=True)
class TMSConfig:
    """Every TMS setting; build with :meth:`from_env`."""

    ewms_address: str
    schedd: str
    backend: str = "htcondor"
    # auth: a static ``system-tms`` token, or OAuth2 client credentials
    ewms_token: str = ""
    ewms_token_url: str = ""
    ewms_client_id: str = ""
    ewms_client_secret: str = ""
    # where things live
    state_dir: Path = Path("/var/tmp/ewms-tms")
    job_event_log_dir: Path = Path("/var/tmp/ewms-tms/job-event-logs")
    # loop timing (seconds)
    poll_interval: float = 1.0
    watcher_interval: float = 0.25
    error_wait: float = 10.0
    file_manager_interval: float = 3600.0
    unmapped_cluster_give_up: float = 300.0
    # WMS calls
    http_timeout: float = 30.0
    http_retries: int = 3
    # what pilots get
    pilot_launch: str = "container"
    pilot_image_base: str = DEFAULT_PILOT_IMAGE_BASE
    pilot_command: str = "ewms-pilot"
    condor_requirements: str = CONTAINER_REQUIREMENTS
    extra_pilot_env: Mapping[str, str] = field(default_factory=dict)
    input_file_schemes: tuple[str, ...] = ("osdf", "https")  # URLs a pilot may be given as input files
    input_file_prefixes: tuple[str, ...] = ()  # and directories whose files it may be given (none by default)
    n_top_task_errors: int = 10
    log_tail_bytes: int = 16384  # of each ended job's stdout and stderr shipped to the WMS
    # local backend
    local_max_concurrent_jobs: int = 2
    local_pilot_command: tuple[str, ...] = ()
    local_monitor_interval: float = 1.0
    local_kill_grace: float = 5.0
    local_pilot_user: str = "ewms-pilot"  # the account pilots run as when the TMS runs as root
    local_sandbox_dir: Path = Path("/var/tmp/ewms-pilot-sandboxes")  # where they run then
    # file manager ages (seconds)
    jel_expiry_short: float = 86400.0
    jel_expiry_long: float = 604800.0
    jel_archive_delete_expiry: float = 604800.0
    taskforce_dirs_expiry: float = 432000.0
    taskforce_dirs_tar_expiry: float = 432000.0
    # operations
    metrics_port: int | None = None
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if self.backend not in ("htcondor", "local"):
            raise ConfigError(f"TMS_BACKEND must be 'htcondor' or 'local', not {self.backend!r}")
        if self.pilot_launch not in ("container", "executable"):
            raise ConfigError(f"TMS_PILOT_LAUNCH must be 'container' or 'executable', not {self.pilot_launch!r}")
        if not self.ewms_token and not (self.ewms_token_url and self.ewms_client_id and self.ewms_client_secret):
            raise ConfigError("set EWMS_TOKEN, or all of EWMS_TOKEN_URL, EWMS_CLIENT_ID and EWMS_CLIENT_SECRET")
        if self.jel_expiry_long < self.jel_expiry_short:
            raise ConfigError("JOB_EVENT_LOG_MODIFICATION_EXPIRY_LONG must be >= ..._SHORT")
        if not 0 <= self.log_tail_bytes <= MAX_LOG_TAIL_BYTES:
            raise ConfigError(f"TMS_LOG_TAIL_BYTES must be between 0 and {MAX_LOG_TAIL_BYTES}")
        if self.local_max_concurrent_jobs < 1:
            raise ConfigError("TMS_LOCAL_MAX_CONCURRENT_JOBS must be >= 1")
        for name in ("poll_interval", "watcher_interval", "error_wait", "file_manager_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TMSConfig:
        """Read the settings from ``environ`` (default: ``os.environ``); raises ConfigError."""
        env = os.environ if environ is None else environ
        defaults: dict[str, Any] = {f.name: f.default for f in fields(cls)}

        def get(name: str, default: str = "") -> str:
            return env.get(name, "").strip() or default

        def number(name: str, attr: str, kind: type[float] | type[int] = float, default: Any = None) -> Any:
            raw = get(name)
            if not raw:
                return defaults[attr] if default is None else default
            try:
                return kind(raw)
            except ValueError as exc:
                raise ConfigError(f"{name} must be a number, not {raw!r}") from exc

        if not get("EWMS_ADDRESS"):
            raise ConfigError("EWMS_ADDRESS is required (e.g. https://ewms.example.org)")
        state_dir = Path(get("TMS_STATE_DIR", str(defaults["state_dir"])))
        launch = get("TMS_PILOT_LAUNCH", "container")
        requirements = env.get("TMS_CONDOR_REQUIREMENTS")
        if requirements is None:
            requirements = CONTAINER_REQUIREMENTS if launch == "container" else ""
        return cls(
            ewms_address=get("EWMS_ADDRESS").rstrip("/"),
            schedd=get("TMS_SCHEDD") or default_schedd(get("TMS_BACKEND", "htcondor")),
            backend=get("TMS_BACKEND", "htcondor"),
            ewms_token=get("EWMS_TOKEN"),
            ewms_token_url=get("EWMS_TOKEN_URL"),
            ewms_client_id=get("EWMS_CLIENT_ID"),
            ewms_client_secret=get("EWMS_CLIENT_SECRET"),
            state_dir=state_dir,
            job_event_log_dir=Path(get("JOB_EVENT_LOG_DIR", str(state_dir / "job-event-logs"))),
            poll_interval=number("TMS_POLL_INTERVAL", "poll_interval"),
            watcher_interval=number("TMS_WATCHER_INTERVAL", "watcher_interval"),
            error_wait=number("TMS_ERROR_WAIT", "error_wait"),
            file_manager_interval=number("TMS_FILE_MANAGER_INTERVAL", "file_manager_interval"),
            unmapped_cluster_give_up=number("TMS_UNMAPPED_CLUSTER_GIVE_UP", "unmapped_cluster_give_up"),
            http_timeout=number("TMS_HTTP_TIMEOUT", "http_timeout"),
            http_retries=number("TMS_HTTP_RETRIES", "http_retries", int),
            pilot_launch=launch,
            pilot_image_base=get("TMS_PILOT_IMAGE_BASE", get("CVMFS_PILOT_PATH", DEFAULT_PILOT_IMAGE_BASE)),
            pilot_command=get("TMS_PILOT_COMMAND", "ewms-pilot"),
            condor_requirements=requirements.strip(),
            extra_pilot_env=parse_extra_pilot_env(get("TMS_ENV_VARS_AND_VALS_ADD_TO_PILOT")),
            input_file_schemes=tuple(w for w in get("TMS_INPUT_FILE_SCHEMES", "osdf,https").split(",") if w),
            input_file_prefixes=tuple(w for w in get("TMS_INPUT_FILE_PREFIXES").split(",") if w),
            n_top_task_errors=number("TMS_N_TOP_TASK_ERRORS", "n_top_task_errors", int),
            log_tail_bytes=number("TMS_LOG_TAIL_BYTES", "log_tail_bytes", int),
            local_max_concurrent_jobs=number(
                "TMS_LOCAL_MAX_CONCURRENT_JOBS", "local_max_concurrent_jobs", int, os.cpu_count() or 2
            ),
            local_pilot_command=tuple(shlex.split(get("TMS_LOCAL_PILOT_COMMAND"))),
            local_monitor_interval=number("TMS_LOCAL_MONITOR_INTERVAL", "local_monitor_interval"),
            local_kill_grace=number("TMS_LOCAL_KILL_GRACE", "local_kill_grace"),
            local_pilot_user=get("TMS_LOCAL_PILOT_USER", "ewms-pilot"),
            local_sandbox_dir=Path(get("TMS_LOCAL_SANDBOX_DIR", str(defaults["local_sandbox_dir"]))),
            jel_expiry_short=number("JOB_EVENT_LOG_MODIFICATION_EXPIRY_SHORT", "jel_expiry_short"),
            jel_expiry_long=number("JOB_EVENT_LOG_MODIFICATION_EXPIRY_LONG", "jel_expiry_long"),
            jel_archive_delete_expiry=number("JOB_EVENT_LOG_ARCHIVE_DELETE_EXPIRY", "jel_archive_delete_expiry"),
            taskforce_dirs_expiry=number("TASKFORCE_DIRS_EXPIRY", "taskforce_dirs_expiry"),
            taskforce_dirs_tar_expiry=number("TASKFORCE_DIRS_TAR_EXPIRY", "taskforce_dirs_tar_expiry"),
            metrics_port=number("TMS_METRICS_PORT", "metrics_port", int),
            log_level=get("LOG_LEVEL", "INFO").upper(),
        )


def default_schedd(backend: str) -> str:
    """This access point's schedd name: HTCondor's ``FULL_HOSTNAME`` (as upstream), else the host name (which is
    also what the WMS maps cluster location ``local`` to by default)."""
    if backend == "htcondor":
        import htcondor2

        name = htcondor2.param.get("FULL_HOSTNAME")
        if name:
            return str(name)
    return socket.gethostname()


def parse_extra_pilot_env(raw: str) -> dict[str, str]:
    """Parse ``"K=V K2='v 2'"`` (shell words); only ``EWMS_PILOT_*`` / ``_EWMS_PILOT_*`` keys are allowed."""
    out: dict[str, str] = {}
    for word in shlex.split(raw):
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ConfigError(f"TMS_ENV_VARS_AND_VALS_ADD_TO_PILOT: expected KEY=VALUE, got {word!r}")
        if not key.startswith(PILOT_ENV_PREFIXES):
            raise ConfigError(
                f"TMS_ENV_VARS_AND_VALS_ADD_TO_PILOT: {key!r} is not a pilot variable "
                f"(must start with {' or '.join(PILOT_ENV_PREFIXES)})"
            )
        out[key] = value
    return out
