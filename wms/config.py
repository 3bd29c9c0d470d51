"""WMS settings, all from environment variables with documented defaults (see Docs/operations.md)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

IMAGES = "images"  # location capability: runs container images (the ``local`` backend runs processes only)
DEFAULT_OPENAPI_PATH = Path(__file__).resolve().parent.parent / "Docs" / "openapi.json"


class ConfigError(ValueError):
    """A setting is missing or malformed."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(env.get(name, default))
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {env.get(name)!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(env.get(name, default))
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {env.get(name)!r}") from exc


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false"):
        raise ConfigError(f"{name} must be true or false, got {env.get(name)!r}")
    return raw == "true"


def _clusters(env: Mapping[str, str]) -> dict[str, str]:
    """Cluster location -> schedd, from ``EWMS_CLUSTERS`` (JSON) or ``EWMS_CLUSTERS_FILE`` (JSON file)."""
    raw = env.get("EWMS_CLUSTERS", "")
    if not raw and env.get("EWMS_CLUSTERS_FILE"):
        raw = Path(env["EWMS_CLUSTERS_FILE"]).read_text()
    if not raw:
        return {"local": socket.gethostname()}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"EWMS_CLUSTERS is not JSON: {exc}") from exc
    if not isinstance(parsed, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and v for k, v in parsed.items()
    ):
        raise ConfigError('EWMS_CLUSTERS must map location -> schedd, e.g. {"osg": "ap1.example.org"}')
    return dict(parsed)


def _capabilities(env: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """Location -> what it can run, from ``EWMS_CLUSTER_CAPABILITIES`` (JSON, e.g. ``{"local": []}``)."""
    try:
        parsed = json.loads(env.get("EWMS_CLUSTER_CAPABILITIES") or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"EWMS_CLUSTER_CAPABILITIES is not JSON: {exc}") from exc
    if not isinstance(parsed, dict) or not all(
        isinstance(v, list) and all(c == IMAGES for c in v) for v in parsed.values()
    ):
        raise ConfigError(f'EWMS_CLUSTER_CAPABILITIES must map location -> list of "{IMAGES}" or nothing')
    return {location: frozenset(caps) for location, caps in parsed.items()}


def _words(env: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in env.get(name, default).split(",") if w.strip())


@dataclass(frozen=True)
class WMSConfig:
    """Everything the WMS process reads from its environment."""

    mongodb_uri: str = ""
    db_name: str = "ewms"
    data_dir: str = ".ewms-data"
    rest_host: str = "127.0.0.1"
    rest_port: int = 8080
    auth_audience: str = "ewms"
    auth_signing_key: str = ""
    auth_openid_url: str = ""
    auth_user_group_pattern: str = ""
    clusters: dict[str, str] = field(default_factory=dict)
    default_priority: int = 50
    max_priority: int = 100
    default_n_workers: int = 1
    tms_action_retries: int = 2
    query_page_size_default: int = 100
    query_page_size_max: int = 1000
    query_max_bytes: int = 10 * 1024 * 1024
    max_body_bytes: int = 1024 * 1024
    mq_retry_min_seconds: float = 1.0
    mq_retry_max_seconds: float = 60.0
    daemon_poll_seconds: float = 1.0
    launch_batch_size: int = 200
    orphan_grace_seconds: float = 300.0
    max_tasks_per_workflow: int = 100
    max_workers_per_taskforce: int = 10000
    max_active_workflows_per_user: int = 100
    max_worker_memory_mb: int = 512 * 1024
    max_worker_disk_mb: int = 10 * 1024 * 1024
    input_file_schemes: frozenset[str] = frozenset({"osdf", "https"})
    input_file_prefixes: tuple[str, ...] = ()
    pilot_env_deny: frozenset[str] = frozenset()
    pilot_env_deny_prefixes: tuple[str, ...] = ()
    cluster_capabilities: dict[str, frozenset[str]] = field(default_factory=dict)
    retention_days: float = 15.0
    archive_retention_days: float = 30.0
    retention_interval_seconds: float = 3600.0
    run_daemons: bool = True
    openapi_path: str = str(DEFAULT_OPENAPI_PATH)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WMSConfig:
        """Read the configuration (``env`` defaults to ``os.environ``)."""
        env = dict(os.environ if env is None else env)
        cfg = cls(
            mongodb_uri=env.get("MONGODB_URI", ""),
            db_name=env.get("WMS_DB_NAME", "ewms"),
            data_dir=env.get("EWMS_DATA_DIR", ".ewms-data"),
            rest_host=env.get("REST_HOST", "127.0.0.1"),
            rest_port=_int(env, "REST_PORT", 8080),
            auth_audience=env.get("AUTH_AUDIENCE", "ewms"),
            auth_signing_key=env.get("AUTH_SIGNING_KEY", ""),
            auth_openid_url=env.get("AUTH_OPENID_URL", ""),
            auth_user_group_pattern=env.get("AUTH_USER_GROUP_PATTERN", ""),
            clusters=_clusters(env),
            default_priority=_int(env, "DEFAULT_WORKFLOW_PRIORITY", 50),
            max_priority=_int(env, "MAX_WORKFLOW_PRIORITY", 100),
            default_n_workers=_int(env, "DEFAULT_N_WORKERS", 1),
            tms_action_retries=_int(env, "TMS_ACTION_RETRIES", 2),
            query_page_size_default=_int(env, "QUERY_PAGE_SIZE_DEFAULT", 100),
            query_page_size_max=_int(env, "QUERY_PAGE_SIZE_MAX", 1000),
            query_max_bytes=_int(env, "USER_QUERY_MAX_BYTES", 10 * 1024 * 1024),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 1024 * 1024),
            mq_retry_min_seconds=_float(env, "MQ_ACTIVATION_RETRY_MIN_SECONDS", 1.0),
            mq_retry_max_seconds=_float(env, "MQ_ACTIVATION_RETRY_MAX_SECONDS", 60.0),
            daemon_poll_seconds=_float(env, "DAEMON_POLL_SECONDS", 1.0),
            launch_batch_size=_int(env, "LAUNCH_BATCH_SIZE", 200),
            orphan_grace_seconds=_float(env, "ORPHAN_GRACE_SECONDS", 300.0),
            max_tasks_per_workflow=_int(env, "MAX_TASKS_PER_WORKFLOW", 100),
            max_workers_per_taskforce=_int(env, "MAX_WORKERS_PER_TASKFORCE", 10000),
            max_active_workflows_per_user=_int(env, "MAX_ACTIVE_WORKFLOWS_PER_USER", 100),
            max_worker_memory_mb=_int(env, "MAX_WORKER_MEMORY_MB", 512 * 1024),
            max_worker_disk_mb=_int(env, "MAX_WORKER_DISK_MB", 10 * 1024 * 1024),
            input_file_schemes=frozenset(_words(env, "INPUT_FILE_SCHEMES", "osdf,https")),
            input_file_prefixes=tuple(p.rstrip("/") or "/" for p in _words(env, "INPUT_FILE_PREFIXES", "")),
            pilot_env_deny=frozenset(w for w in _words(env, "PILOT_ENV_DENY", "") if not w.endswith("*")),
            pilot_env_deny_prefixes=tuple(w[:-1] for w in _words(env, "PILOT_ENV_DENY", "") if w.endswith("*")),
            cluster_capabilities=_capabilities(env),
            retention_days=_float(env, "RETENTION_DAYS", 15.0),
            archive_retention_days=_float(env, "ARCHIVE_RETENTION_DAYS", 30.0),
            retention_interval_seconds=_float(env, "RETENTION_INTERVAL_SECONDS", 3600.0),
            run_daemons=_bool(env, "WMS_RUN_DAEMONS", True),
            openapi_path=env.get("WMS_OPENAPI_PATH", str(DEFAULT_OPENAPI_PATH)),
            env=env,
        )
        if not cfg.auth_signing_key and not cfg.auth_openid_url:
            raise ConfigError("set AUTH_SIGNING_KEY (dev/tests) or AUTH_OPENID_URL + AUTH_AUDIENCE (production)")
        if not 0 <= cfg.default_priority <= cfg.max_priority:
            raise ConfigError("DEFAULT_WORKFLOW_PRIORITY must be between 0 and MAX_WORKFLOW_PRIORITY")
        if not all(p.startswith("/") for p in cfg.input_file_prefixes):
            raise ConfigError("INPUT_FILE_PREFIXES must be absolute paths")
        return cfg

    def location_capabilities(self, location: str) -> frozenset[str]:
        """What a location can run: as configured, else ``local`` runs processes only and others run images."""
        default = frozenset() if location == "local" else frozenset({IMAGES})
        return self.cluster_capabilities.get(location, default)
