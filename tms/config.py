"""TMS settings, read once from the environment into a frozen dataclass (table: Docs/settings/tms.md)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ewms_settings import ConfigError as ConfigError  # re-exported: the one settings error
from ewms_settings import read, setting, shell_words

DEFAULT_PILOT_IMAGE_BASE = (
    "/cvmfs/icecube.opensciencegrid.org/containers/ewms/observation-management-service/ewms-pilot"
)
CONTAINER_REQUIREMENTS = (
    "ifthenelse(!isUndefined(HAS_SINGULARITY), HAS_SINGULARITY, HasSingularity)"
    " && HAS_CVMFS_icecube_opensciencegrid_org && HasUserNamespaces =?= true"
)
PILOT_ENV_PREFIXES = ("EWMS_PILOT_", "_EWMS_PILOT_")
MAX_LOG_TAIL_BYTES = 65536  # the WMS keeps at most this many characters per output tail
STATE_DIR = Path("/var/tmp/ewms-tms")


def _base_url(raw: str) -> str:
    return raw.rstrip("/")


def _words(raw: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in raw.split(",") if w.strip())


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
    for word in shell_words(raw):
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ConfigError(f"holds {word!r}: expected KEY=VALUE")
        if not key.startswith(PILOT_ENV_PREFIXES):
            raise ConfigError(
                f"holds {key!r}, which is not a pilot variable (must start with {' or '.join(PILOT_ENV_PREFIXES)})"
            )
        out[key] = value
    return out


@dataclass(frozen=True)
class TMSConfig:
    """Every TMS setting, each declared once with its environment variable; build with :meth:`from_env`."""

    ewms_address: str = setting("EWMS_ADDRESS", "WMS base URL, e.g. `https://ewms.example.org`", parse=_base_url)
    schedd: str = setting(
        "TMS_SCHEDD",
        "the schedd this TMS serves",
        default_doc="HTCondor `FULL_HOSTNAME` (htcondor), host name (local)",
    )
    backend: str = setting("TMS_BACKEND", "where pilots run", "htcondor", choices=("htcondor", "local"))
    # auth: a static ``system-tms`` token, or OAuth2 client credentials
    ewms_token: str = setting("EWMS_TOKEN", "a static bearer token with role `system-tms` …", "")
    ewms_token_url: str = setting(
        "EWMS_TOKEN_URL", "… or OAuth2 client credentials (token refreshed before expiry and on 401)", ""
    )
    ewms_client_id: str = setting("EWMS_CLIENT_ID", "client id of those credentials", "")
    ewms_client_secret: str = setting("EWMS_CLIENT_SECRET", "client secret of those credentials", "")
    # where things live
    state_dir: Path = setting(
        "TMS_STATE_DIR", "local-backend state (cluster id counter, unfinished jobs)", STATE_DIR
    )
    job_event_log_dir: Path = setting(
        "JOB_EVENT_LOG_DIR",
        "job event logs and `ewms-taskforce-*` dirs",
        STATE_DIR / "job-event-logs",
        default_doc="`$TMS_STATE_DIR/job-event-logs`",
    )
    # loop timing (seconds)
    poll_interval: float = setting("TMS_POLL_INTERVAL", "s between starter/stopper polls when idle", 1.0, gt=0)
    watcher_interval: float = setting("TMS_WATCHER_INTERVAL", "s between watcher passes", 0.25, gt=0)
    error_wait: float = setting(
        "TMS_ERROR_WAIT", "s pause after a failed submit/remove, and the longest error back-off", 10.0, gt=0
    )
    file_manager_interval: float = setting(
        "TMS_FILE_MANAGER_INTERVAL", "s between file manager passes (one at start)", 3600.0, gt=0
    )
    unmapped_cluster_give_up: float = setting(
        "TMS_UNMAPPED_CLUSTER_GIVE_UP", "s after which a cluster no taskforce claims is ignored", 300.0, ge=0
    )
    # WMS calls
    http_timeout: float = setting("TMS_HTTP_TIMEOUT", "s per WMS request", 30.0, gt=0)
    http_retries: int = setting(
        "TMS_HTTP_RETRIES",
        "retries of a WMS request (bounded back-off, `Retry-After` honoured) on connection errors, 429, 502/503/504",
        3,
        ge=0,
    )
    status_report_max_bytes: int = setting(
        "TMS_STATUS_REPORT_MAX_BYTES",
        "JSON bytes per status report call, below the WMS's `MAX_BODY_BYTES` (1 MiB); a 413 splits a call",
        512 * 1024,
        ge=1024,
    )
    # what pilots get
    pilot_launch: str = setting(
        "TMS_PILOT_LAUNCH",
        "`container` (pilot image) or `executable` (`/bin/sh` wrapper)",
        "container",
        choices=("container", "executable"),
    )
    pilot_image_base: str = setting(
        "TMS_PILOT_IMAGE_BASE", "pilot image path; `:<tag>` is appended", DEFAULT_PILOT_IMAGE_BASE,
        aliases=("CVMFS_PILOT_PATH",),
    )  # fmt: skip
    pilot_command: str = setting("TMS_PILOT_COMMAND", "what the executable wrapper runs", "ewms-pilot")
    condor_requirements: str = setting(
        "TMS_CONDOR_REQUIREMENTS",
        "ANDed with the taskforce's requirements (set but empty: none)",
        CONTAINER_REQUIREMENTS,
        default_doc="Apptainer + CVMFS + user namespaces (container), empty (executable)",
        keeps_blank=True,
    )
    extra_pilot_env: Mapping[str, str] = setting(
        "TMS_ENV_VARS_AND_VALS_ADD_TO_PILOT",
        "`K=V K2='v 2'` added to every pilot's environment; only `EWMS_PILOT_*`/`_EWMS_PILOT_*` keys",
        default_factory=dict,
        parse=parse_extra_pilot_env,
    )
    pilot_default_first_message: float = setting(
        "TMS_PILOT_DEFAULT_WAIT_FOR_FIRST_MESSAGE",
        "s a pilot waits for its first event, unless the taskforce or the operator sets"
        " `EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE` (covers submit, poll for queues, then send)",
        300.0,
        gt=0,
    )
    pilot_default_idle: float = setting(
        "TMS_PILOT_DEFAULT_IDLE_TIMEOUT",
        "s without an event after which a pilot ends, unless `EWMS_PILOT_TIMEOUT_QUEUE_INCOMING` is set (events"
        " sent later get new pilots from the WMS's elastic workers)",
        60.0,
        gt=0,
    )
    pilot_wms_address: str = setting(
        "TMS_PILOT_WMS_ADDRESS",
        "the WMS base URL as pilots reach it, for renewing their queue tokens",
        "",
        parse=_base_url,
        default_doc="`EWMS_ADDRESS`",
    )
    input_file_schemes: tuple[str, ...] = setting(
        "TMS_INPUT_FILE_SCHEMES", "URL schemes a pilot may be given as input files (comma-separated)",
        ("osdf", "https"), parse=_words,
    )  # fmt: skip
    input_file_prefixes: tuple[str, ...] = setting(
        "TMS_INPUT_FILE_PREFIXES",
        "directories whose files a pilot may be given as input files (comma-separated; none by default)",
        (),
        parse=_words,
    )
    n_top_task_errors: int = setting("TMS_N_TOP_TASK_ERRORS", "errors kept in `top_task_errors`", 10, ge=0)
    log_tail_bytes: int = setting(
        "TMS_LOG_TAIL_BYTES",
        "bytes of each ended job's stdout and stderr shipped to the WMS (0: none)",
        16384,
        ge=0,
        le=MAX_LOG_TAIL_BYTES,
    )
    log_running_interval: float = setting(
        "TMS_LOG_RUNNING_INTERVAL",
        "s between shipments of running jobs' growing output tails (each job only when its files changed; 0: only"
        " ended jobs)",
        5.0,
        ge=0,
    )
    # local backend
    local_max_concurrent_jobs: int = setting(
        "TMS_LOCAL_MAX_CONCURRENT_JOBS", "local backend: pilots run at once", 2, ge=1, default_doc="number of CPUs"
    )
    local_pilot_command: tuple[str, ...] = setting(
        "TMS_LOCAL_PILOT_COMMAND", "local backend: the pilot command, shell words", (), parse=shell_words,
        default_doc="`<python> -m pilot`",
    )  # fmt: skip
    local_monitor_interval: float = setting(
        "TMS_LOCAL_MONITOR_INTERVAL", "s between runtime/memory checks (local)", 1.0, gt=0
    )
    local_kill_grace: float = setting("TMS_LOCAL_KILL_GRACE", "s between SIGTERM and SIGKILL (local)", 5.0, ge=0)
    local_pilot_user: str = setting(
        "TMS_LOCAL_PILOT_USER", "local backend: the account pilots run as when the TMS runs as root", "ewms-pilot"
    )
    local_sandbox_dir: Path = setting(
        "TMS_LOCAL_SANDBOX_DIR", "local backend: where pilots run when the TMS runs as root",
        Path("/var/tmp/ewms-pilot-sandboxes"),
    )  # fmt: skip
    # file manager ages (seconds)
    jel_expiry_short: float = setting(
        "JOB_EVENT_LOG_MODIFICATION_EXPIRY_SHORT",
        "s: gzip a log this old if no unfinished taskforce uses it",
        86400.0,
        ge=0,
    )
    jel_expiry_long: float = setting(
        "JOB_EVENT_LOG_MODIFICATION_EXPIRY_LONG", "s: gzip a log this old regardless (must be >= SHORT)", 604800.0,
        ge=0,
    )  # fmt: skip
    jel_archive_delete_expiry: float = setting(
        "JOB_EVENT_LOG_ARCHIVE_DELETE_EXPIRY", "s: delete `*.tms.jel.gz` this old", 604800.0, ge=0
    )
    taskforce_dirs_expiry: float = setting(
        "TASKFORCE_DIRS_EXPIRY",
        "s: tar.gz an `ewms-taskforce-*` dir unchanged this long (newest file inside)",
        432000.0,
        ge=0,
    )
    taskforce_dirs_tar_expiry: float = setting(
        "TASKFORCE_DIRS_TAR_EXPIRY", "s: delete those tarballs this old", 432000.0, ge=0
    )
    # operations
    metrics_port: int | None = setting(
        "TMS_METRICS_PORT", "serve Prometheus metrics (`ewms_tms_*`) on this port", None, ge=0, le=65535
    )
    log_level: str = setting("LOG_LEVEL", "log level", "INFO", parse=str.upper)

    def __post_init__(self) -> None:
        if not self.ewms_token and not (self.ewms_token_url and self.ewms_client_id and self.ewms_client_secret):
            raise ConfigError("set EWMS_TOKEN, or all of EWMS_TOKEN_URL, EWMS_CLIENT_ID and EWMS_CLIENT_SECRET")
        if self.jel_expiry_long < self.jel_expiry_short:
            raise ConfigError("JOB_EVENT_LOG_MODIFICATION_EXPIRY_LONG must be >= ..._SHORT")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TMSConfig:
        """Read the settings from ``environ`` (default: ``os.environ``); raises ConfigError listing every problem."""
        problems: list[str] = []
        values = read(cls, os.environ if environ is None else environ, problems)
        if problems:
            raise ConfigError(problems)
        values.setdefault("schedd", default_schedd(values.get("backend", "htcondor")))
        values.setdefault("job_event_log_dir", values.get("state_dir", STATE_DIR) / "job-event-logs")
        if "condor_requirements" not in values and values.get("pilot_launch") == "executable":
            values["condor_requirements"] = ""
        values.setdefault("local_max_concurrent_jobs", os.cpu_count() or 2)
        return cls(**values)
