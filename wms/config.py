"""WMS settings, each declared once below with its environment variable (table: Docs/settings/wms.md)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ewms_settings import ConfigError as ConfigError  # re-exported: the one settings error
from ewms_settings import read, setting

DEFAULT_OPENAPI_PATH = Path(__file__).resolve().parent.parent / "Docs" / "openapi.json"


def parse_clusters(raw: str) -> dict[str, str]:
    """Cluster location -> schedd, from a JSON object like ``{"osg": "ap1.example.org"}``."""
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not JSON: {exc}") from None
    if not isinstance(parsed, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and v for k, v in parsed.items()
    ):
        raise ValueError('must map location -> schedd, e.g. {"osg": "ap1.example.org"}')
    return dict(parsed)


IMAGES = "images"  # location capability: runs container images (the ``local`` backend runs processes only)


def _capabilities(raw: str) -> dict[str, frozenset[str]]:
    """Location -> what it can run, from JSON such as ``{"local": []}``."""
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not JSON: {exc}") from exc
    if not isinstance(parsed, dict) or not all(
        isinstance(v, list) and all(c == IMAGES for c in v) for v in parsed.values()
    ):
        raise ValueError(f'must map location -> list of "{IMAGES}" or nothing')
    return {location: frozenset(caps) for location, caps in parsed.items()}


def _words(raw: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in raw.split(",") if w.strip())


def _prefixes(raw: str) -> tuple[str, ...]:
    prefixes = tuple(p.rstrip("/") or "/" for p in _words(raw))
    if not all(p.startswith("/") for p in prefixes):
        raise ValueError("must be absolute paths")
    return prefixes


def _clusters_file(raw: str) -> dict[str, str]:
    try:
        text = Path(raw).read_text()
    except OSError as exc:
        raise ValueError(f"cannot be read: {exc.strerror}") from None
    return parse_clusters(text)


@dataclass(frozen=True)
class WMSConfig:
    """Everything the WMS process reads from its environment."""

    mongodb_uri: str = setting(
        "MONGODB_URI", "any MongoDB URI; `python -m wms` needs one (`ewms dev up` runs a local server)", ""
    )
    db_name: str = setting("WMS_DB_NAME", "database name", "ewms")
    rest_host: str = setting("REST_HOST", "listening address", "127.0.0.1")
    rest_port: int = setting("REST_PORT", "listening port (`0` picks a free port)", 8080, ge=0, le=65535)
    auth_audience: str = setting("AUTH_AUDIENCE", "production: the `aud` tokens must carry", "ewms")
    auth_signing_key: str = setting("AUTH_SIGNING_KEY", "HS256 key for bearer tokens (dev stack, tests)", "")
    auth_openid_url: str = setting(
        "AUTH_OPENID_URL", "production: tokens from this OpenID provider (RS256 via its JWKS)", ""
    )
    auth_issuer: str = setting(
        "AUTH_ISSUER",
        "tokens must carry this `iss` (with `AUTH_OPENID_URL`, defaults to the provider's `issuer`)",
        "",
    )
    auth_user_group_pattern: str = setting(
        "AUTH_USER_GROUP_PATTERN", "regex: a token whose `groups` claim matches gets the `user` role", ""
    )
    clusters: dict[str, str] = setting(
        "EWMS_CLUSTERS",
        'JSON map cluster location -> schedd name, e.g. `{"osg": "ap1.example.org"}`',
        default_factory=dict,
        parse=parse_clusters,
        default_doc='`EWMS_CLUSTERS_FILE`, else `{"local": "<hostname>"}`',
    )
    clusters_file: dict[str, str] = setting(
        "EWMS_CLUSTERS_FILE", "a file holding that JSON map (when `EWMS_CLUSTERS` is unset)", default_factory=dict,
        parse=_clusters_file,
    )  # fmt: skip
    default_priority: int = setting(
        "DEFAULT_WORKFLOW_PRIORITY", "priority of a workflow that names none (at most the maximum)", 50, ge=0
    )
    max_priority: int = setting("MAX_WORKFLOW_PRIORITY", "requested priorities are capped at this", 100, ge=0)
    default_n_workers: int = setting(
        "DEFAULT_N_WORKERS", "workers per taskforce when a task omits `n_workers`", 1, ge=1
    )
    tms_action_retries: int = setting(
        "TMS_ACTION_RETRIES",
        "failed `condor-submit`/`condor-rm` attempts retried before the taskforce is no longer offered",
        2,
        ge=0,
    )
    query_page_size_default: int = setting("QUERY_PAGE_SIZE_DEFAULT", "query page size", 100, ge=1)
    query_page_size_max: int = setting("QUERY_PAGE_SIZE_MAX", "largest query page size", 1000, ge=1)
    query_max_bytes: int = setting(
        "USER_QUERY_MAX_BYTES", "a query page is cut before it exceeds this size (bytes)", 10 * 1024 * 1024, ge=1
    )
    query_time_ms: int = setting(
        "USER_QUERY_TIME_MS",
        "time budget of one user query (`maxTimeMS`; the embedded server ignores it, so the filter bounds below"
        " are what protects it)",
        5000,
        ge=1,
    )
    query_max_depth: int = setting("USER_QUERY_MAX_DEPTH", "deeper user query filters get 400", 6, ge=1)
    query_max_terms: int = setting(
        "USER_QUERY_MAX_TERMS", "user query filters with more keys and list items get 400", 100, ge=1
    )
    query_regex_max_length: int = setting(
        "USER_QUERY_REGEX_MAX_LENGTH", "longest `$regex` (an anchored literal prefix such as `^abc`)", 64, ge=1
    )
    max_body_bytes: int = setting(
        "MAX_BODY_BYTES", "larger request bodies get 413 (by `Content-Length`, else as they stream in)", 1024 * 1024,
        ge=1,
    )  # fmt: skip
    max_json_depth: int = setting("MAX_JSON_DEPTH", "request bodies nested deeper get 400", 32, ge=1)
    max_connections: int = setting(
        "MAX_CONNECTIONS", "open client connections; more get 503 and are closed at once", 1000, ge=1
    )
    max_connections_per_client: int = setting(
        "MAX_CONNECTIONS_PER_CLIENT",
        "open connections from one client address (`0`: no per-client cap, e.g. behind a reverse proxy)",
        100,
        ge=0,
    )
    idle_timeout_seconds: float = setting(
        "HTTP_IDLE_TIMEOUT_SECONDS",
        "a connection that sends no complete request headers for this long (new or kept alive) is closed",
        20.0,
        gt=0,
    )
    body_timeout_seconds: float = setting(
        "HTTP_BODY_TIMEOUT_SECONDS", "a request whose body has not fully arrived after this long is closed", 30.0,
        gt=0,
    )  # fmt: skip
    metrics_token: str = setting(
        "METRICS_TOKEN",
        "bearer credential Prometheus sends to `GET /metrics` (an admin token works too; neither: 401)",
        "",
    )
    trust_proxy_headers: bool = setting(
        "TRUST_PROXY_HEADERS",
        "take the client's address from `X-Forwarded-For` / `X-Real-Ip` (only behind a reverse proxy that overwrites"
        " them; else any client could name any address in the access log)",
        False,
    )
    db_slow_command_ms: float = setting(
        "DB_SLOW_COMMAND_MS",
        "database commands that take at least this long are logged as warnings (0: never); every command's time is"
        " in the `ewms_wms_db_command_seconds` histogram",
        500.0,
        ge=0,
    )
    metrics_refresh_seconds: float = setting(
        "METRICS_REFRESH_SECONDS", "the database counts `/metrics` serves are refreshed at most this often", 5.0,
        ge=0,
    )  # fmt: skip
    mq_retry_min_seconds: float = setting(
        "MQ_ACTIVATION_RETRY_MIN_SECONDS", "first back-off of a failed queue activation", 1.0, ge=0
    )
    mq_retry_max_seconds: float = setting(
        "MQ_ACTIVATION_RETRY_MAX_SECONDS", "longest back-off of failed queue activations", 60.0, ge=0
    )
    daemon_poll_seconds: float = setting(
        "DAEMON_POLL_SECONDS", "daemons' poll period; they also wake at once when a request creates work", 1.0, gt=0
    )
    launch_batch_size: int = setting(
        "LAUNCH_BATCH_SIZE", "taskforces released to the TMS per launch-control pass", 200, ge=1
    )
    orphan_grace_seconds: float = setting(
        "ORPHAN_GRACE_SECONDS",
        "age after which children of a request that never wrote its workflow are deleted",
        300.0,
        ge=0,
    )
    max_tasks_per_workflow: int = setting("MAX_TASKS_PER_WORKFLOW", "more tasks in one request: 422", 100, ge=1)
    max_workers_per_taskforce: int = setting(
        "MAX_WORKERS_PER_TASKFORCE", "larger `n_workers` (request or add-workers): 422", 10000, ge=1
    )
    max_active_workflows_per_user: int = setting(
        "MAX_ACTIVE_WORKFLOWS_PER_USER",
        "a user with this many active workflows gets 429 with `Retry-After: 60`",
        100,
        ge=0,
    )
    max_worker_memory_mb: int = setting(
        "MAX_WORKER_MEMORY_MB", "largest `worker_config.worker_memory` a request may ask for (MB): 422", 512 * 1024,
        ge=1,
    )  # fmt: skip
    max_worker_disk_mb: int = setting(
        "MAX_WORKER_DISK_MB", "largest `worker_config.worker_disk` a request may ask for (MB): 422", 10 * 1024 * 1024,
        ge=1,
    )  # fmt: skip
    input_file_schemes: tuple[str, ...] = setting(
        "INPUT_FILE_SCHEMES", "URL schemes allowed in `pilot_config.input_files` (comma-separated)", ("osdf", "https"),
        parse=_words,
    )  # fmt: skip
    input_file_prefixes: tuple[str, ...] = setting(
        "INPUT_FILE_PREFIXES",
        "absolute directories whose files `pilot_config.input_files` may name (comma-separated; none by default)",
        (),
        parse=_prefixes,
    )
    pilot_env_deny_rules: tuple[str, ...] = setting(
        "PILOT_ENV_DENY",
        "more pilot environment variables users may not set, beside the built-in deny-list: `NAME` or `PREFIX*`",
        (),
        parse=_words,
    )
    cluster_capabilities: dict[str, frozenset[str]] = setting(
        "EWMS_CLUSTER_CAPABILITIES",
        'JSON: location -> what it can run (`["images"]` or `[]`); unnamed locations: `local` runs processes only,'
        " others run images",
        default_factory=dict,
        parse=_capabilities,
    )
    max_retries_per_task: int = setting(
        "MAX_RETRIES_PER_TASK", "retries of a task's failed taskforces beyond this: 422", 10, ge=0
    )
    max_added_taskforces_per_task: int = setting(
        "MAX_ADDED_TASKFORCES_PER_TASK", "add-workers calls for one task beyond this: 422", 20, ge=0
    )
    elastic_interval_seconds: float = setting(
        "ELASTIC_WORKERS_INTERVAL_SECONDS",
        "how often the elastic-workers daemon looks for events that no worker consumes (broker figures lag ~5 s)",
        10.0,
        gt=0,
    )
    elastic_min_gap_seconds: float = setting(
        "ELASTIC_WORKERS_MIN_GAP_SECONDS", "least time between two taskforces it adds for one task", 30.0, ge=0
    )
    pilot_credential_signing_key: str = setting(
        "PILOT_CREDENTIAL_SIGNING_KEY",
        "HS256 key of the credentials pilots renew queue tokens with (empty: `AUTH_SIGNING_KEY`; both empty: pilots"
        " get no credential and cannot renew)",
        "",
        secret=True,
    )
    pilot_credential_margin_seconds: float = setting(
        "PILOT_CREDENTIAL_MARGIN_SECONDS",
        "a pilot credential lives its taskforce's `max_worker_runtime` plus this (time queued in the scheduler)",
        2 * 86400.0,
        ge=0,
    )
    retention_days: float = setting(
        "RETENTION_DAYS",
        "deactivated workflows older than this are archived, then deleted with their task directives, taskforces,"
        " job logs and queue profiles (once their queues are gone)",
        15.0,
        ge=0,
    )
    archive_retention_days: float = setting(
        "ARCHIVE_RETENTION_DAYS",
        "archived workflows older than this are purged (admins: `GET /v0/admin/archive/workflows`,"
        " `POST /v0/admin/archive/purge`)",
        30.0,
        ge=0,
    )
    retention_interval_seconds: float = setting(
        "RETENTION_INTERVAL_SECONDS", "how often the retention daemon runs", 3600.0, gt=0
    )
    run_daemons: bool = setting(
        "WMS_RUN_DAEMONS",
        "`true`: contend for the daemon lease and run the daemons while holding it; `false`: serve REST only"
        " (see Processes)",
        True,
    )
    daemon_lease_seconds: float = setting(
        "DAEMON_LEASE_SECONDS",
        "lease time of the instance running the daemons: renewed every quarter of it; another instance takes over"
        " within about 1.25 times it after the holder dies",
        20.0,
        gt=0,
    )
    unsubmitted_stop_grace_seconds: float = setting(
        "UNSUBMITTED_STOP_GRACE_SECONDS",
        "a stopped (`pending-stopper`) taskforce that never got a cluster is ended (`condor-complete`) this long"
        " after the daemons first see it, so that a submit still in flight is recorded (and removed) first",
        300.0,
        ge=0,
    )
    openapi_path: str = setting(
        "WMS_OPENAPI_PATH",
        "the document requests are validated against",
        str(DEFAULT_OPENAPI_PATH),
        default_doc="`Docs/openapi.json`",
    )
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def pilot_key(self) -> str:
        """The key pilot credentials are signed and checked with ("" when pilots get none)."""
        return self.pilot_credential_signing_key or self.auth_signing_key

    @property
    def pilot_env_deny(self) -> frozenset[str]:
        """Operator-denied pilot environment names."""
        return frozenset(w for w in self.pilot_env_deny_rules if not w.endswith("*"))

    @property
    def pilot_env_deny_prefixes(self) -> tuple[str, ...]:
        """Operator-denied pilot environment name prefixes."""
        return tuple(w[:-1] for w in self.pilot_env_deny_rules if w.endswith("*"))

    def location_capabilities(self, location: str) -> frozenset[str]:
        """What a location can run: as configured, else ``local`` runs processes only and others run images."""
        default = frozenset() if location == "local" else frozenset({IMAGES})
        return self.cluster_capabilities.get(location, default)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WMSConfig:
        """Read the configuration (``env`` defaults to ``os.environ``); raises ConfigError listing every problem."""
        env = dict(os.environ if env is None else env)
        problems: list[str] = []
        values = read(cls, env, problems)
        if problems:
            raise ConfigError(problems)
        values.setdefault("clusters", values.get("clusters_file") or {"local": socket.gethostname()})
        cfg = cls(**values, env=env)
        if not cfg.auth_signing_key and not cfg.auth_openid_url:
            raise ConfigError("set AUTH_SIGNING_KEY (dev/tests) or AUTH_OPENID_URL + AUTH_AUDIENCE (production)")
        if not 0 <= cfg.default_priority <= cfg.max_priority:
            raise ConfigError("DEFAULT_WORKFLOW_PRIORITY must be between 0 and MAX_WORKFLOW_PRIORITY")
        return cfg
