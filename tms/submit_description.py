"""Turn a pending-starter taskforce into a pilot job: its environment, env file and HTCondor submit description."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tms.backends.base import JobSpec
from tms.config import TMSConfig
from tms.files import atomic_write_text

ENV_FILE_NAME = "ewms_htcondor_envfile.sh"
PRIORITY_MAX_DEDUCTION_FACTOR = 0.5
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_URL_RE = re.compile(r"^([a-z][a-z0-9+.-]*)://")


class TaskforceSpecError(ValueError):
    """The taskforce cannot be turned into jobs (reported to the WMS as a failed submission)."""


def taskforce_dir(config: TMSConfig, uuid: str) -> Path:
    """Per-taskforce directory (env file, worker stdout/stderr) under the job event log dir."""
    return config.job_event_log_dir / f"ewms-taskforce-{uuid}"


def parse_size(value: str | int) -> int:
    """Bytes in ``"512M"``, ``"1.5 GB"``, ``"2GiB"`` or a bare byte count (units are powers of 1024)."""
    if isinstance(value, int):
        return value
    match = _SIZE_RE.match(value)
    if not match:
        raise TaskforceSpecError(f"not a size: {value!r} (use e.g. 512M, 4GB, 2GiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def priority_expression(priority: int, n_workers: int) -> str:
    """Job priority ramping down by up to half across procs, so that parallel taskforces share slots."""
    if n_workers <= 1 or priority <= 1:
        return str(priority)
    deduction = int(priority * PRIORITY_MAX_DEDUCTION_FACTOR)
    return f"{priority} - (($(ProcId) * {deduction}) / {n_workers - 1})"


def pilot_environment(
    taskforce: Mapping[str, Any],
    task_directive: Mapping[str, Any],
    mqprofiles: Sequence[Mapping[str, Any]],
    extra_env: Mapping[str, str],
) -> dict[str, str]:
    """The pilot's env: the taskforce's ``pilot_config.environment`` (as the user sent it), overridden by the
    operator's ``extra_env``, overridden by the TMS's own: the task and init task from the task directive (as
    upstream's TMS builds them at submit), the queue and status variables. Keys must be identifiers and values hold
    no NUL byte."""
    given = (taskforce.get("pilot_config") or {}).get("environment") or {}
    env = {key: _env_value(value) for key, value in given.items()}
    env.update(extra_env)
    env.update(_task_variables(task_directive))
    for key, value in env.items():
        if not _ENV_KEY_RE.fullmatch(str(key)) or "\0" in value:
            raise TaskforceSpecError(f"pilot environment: {str(key)[:64]!r} is not an identifier, or its value has NUL")
    profiles = {p["mqid"]: p for p in mqprofiles}
    for direction, mqids in (
        ("INCOMING", task_directive.get("input_queues", [])),
        ("OUTGOING", task_directive.get("output_queues", [])),
    ):
        if not mqids:
            continue
        chosen = []
        for mqid in mqids:
            profile = profiles.get(mqid)
            if profile is None:
                raise TaskforceSpecError(f"no MQ profile for queue {mqid}")
            if not profile.get("is_activated") or not profile.get("auth_token") or not profile.get("broker_address"):
                raise TaskforceSpecError(f"queue {mqid} is not activated (no token or broker address yet)")
            chosen.append(profile)
        prefix = f"EWMS_PILOT_QUEUE_{direction}"
        env[prefix] = ";".join(str(p["mqid"]) for p in chosen)
        env[f"{prefix}_AUTH_TOKEN"] = ";".join(str(p["auth_token"]) for p in chosen)
        env[f"{prefix}_BROKER_TYPE"] = ";".join(str(p.get("broker_type") or "rabbitmq") for p in chosen)
        env[f"{prefix}_BROKER_ADDRESS"] = ";".join(str(p["broker_address"]) for p in chosen)
    env["EWMS_PILOT_HTCHIRP"] = "True"
    env["EWMS_PILOT_HTCHIRP_DEST"] = "JOB_EVENT_LOG"
    return env


def _task_variables(task_directive: Mapping[str, Any]) -> dict[str, str]:
    """The pilot variables that define its task and init task: image and args always, environments (as JSON)
    when not empty."""
    env = {
        "EWMS_PILOT_TASK_IMAGE": str(task_directive.get("task_image") or ""),
        "EWMS_PILOT_TASK_ARGS": str(task_directive.get("task_args") or ""),
        "EWMS_PILOT_INIT_IMAGE": str(task_directive.get("init_image") or ""),
        "EWMS_PILOT_INIT_ARGS": str(task_directive.get("init_args") or ""),
    }
    for kind in ("TASK", "INIT"):
        if task_directive.get(f"{kind.lower()}_env"):
            env[f"EWMS_PILOT_{kind}_ENV_JSON"] = json.dumps(task_directive[f"{kind.lower()}_env"], sort_keys=True)
    return env


def _env_value(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def checked_input_files(config: TMSConfig, names: Sequence[Any]) -> list[str]:
    """The taskforce's input files, each an allowed URL or a real path under an allowed prefix (symlinks and
    ``..`` resolved first); raises TaskforceSpecError naming the rule."""
    checked = []
    for name in map(str, names):
        if "," in name or _CONTROL_RE.search(name):
            raise TaskforceSpecError(f"input file {name[:200]!r}: commas and control characters are not allowed")
        url = _URL_RE.match(name)
        if url:
            if url.group(1) not in config.input_file_schemes:
                raise TaskforceSpecError(f"input file {name[:200]!r}: URL scheme {url.group(1)}:// is not allowed")
            checked.append(name)
            continue
        real = os.path.realpath(name)
        prefixes = [os.path.realpath(p) for p in config.input_file_prefixes]
        if not name.startswith("/") or not any(real == p or real.startswith(p.rstrip("/") + "/") for p in prefixes):
            raise TaskforceSpecError(f"input file {name[:200]!r} is not under a prefix in TMS_INPUT_FILE_PREFIXES")
        checked.append(real)
    return checked


def env_file_text(uuid: str, env: Mapping[str, str]) -> str:
    """A shell file the pilot's entrypoint sources (``export K='v'`` lines)."""
    lines = [f"# EWMS pilot environment for taskforce {uuid}, written by the TMS"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in sorted(env.items())]
    return "\n".join(lines) + "\n"


def build_submit_dict(
    config: TMSConfig, taskforce: Mapping[str, Any], job_event_log: Path, env_file: Path
) -> dict[str, str]:
    """The HTCondor submit description of the taskforce's pilot jobs."""
    uuid = str(taskforce["taskforce_uuid"])
    worker = taskforce.get("worker_config") or {}
    pilot = taskforce.get("pilot_config") or {}
    n_workers = int(taskforce.get("n_workers") or 0)
    try:
        memory_mib = math.ceil(parse_size(worker["worker_memory"]) / 1024**2)
        disk_kib = math.ceil(parse_size(worker["worker_disk"]) / 1024)
        n_cores = int(worker["n_cores"])
        max_runtime = int(worker["max_worker_runtime"])
        priority = int(worker["priority"])
    except KeyError as exc:
        raise TaskforceSpecError(f"worker_config lacks {exc}") from exc

    input_files = checked_input_files(config, pilot.get("input_files", []))
    for name, value in (("pilot tag", pilot.get("tag")), ("condor_requirements", worker.get("condor_requirements"))):
        if _CONTROL_RE.search(str(value or "")):  # one line of the submit description each
            raise TaskforceSpecError(f"{name} {str(value)[:200]!r}: control characters are not allowed")
    submit: dict[str, str] = {}
    if config.pilot_launch == "container":
        submit["universe"] = "container"
        submit["+should_transfer_container"] = "no"
        submit["container_image"] = f"{config.pilot_image_base}:{pilot.get('tag', 'latest')}"
    else:
        submit["universe"] = "vanilla"
        submit["executable"] = "/bin/sh"
        submit["arguments"] = f"\"-c '. ./{ENV_FILE_NAME} && exec {config.pilot_command}'\""
    requirements = [r for r in (config.condor_requirements, str(worker.get("condor_requirements") or "")) if r]
    if requirements:
        submit["requirements"] = " && ".join(f"({r})" for r in requirements)
    submit.update(
        {
            "+FileSystemDomain": '"blah"',  # never assume a shared filesystem: always transfer files
            "log": str(job_event_log),
            "transfer_input_files": ",".join([*input_files, str(env_file)]),
            "transfer_output_files": '""',
            "should_transfer_files": "YES",
            "when_to_transfer_output": "ON_EXIT_OR_EVICT",
            "transfer_executable": "false",
            "request_cpus": str(n_cores),
            "request_memory": str(memory_mib),
            "request_disk": str(disk_kib),
            "priority": priority_expression(priority, n_workers),
            "+WantIOProxy": "true",
            "+OriginalTime": str(max_runtime),
            "allowed_execute_duration": str(max_runtime),
            "+EWMSTaskforceUUID": f'"{uuid}"',
            "job_ad_information_attrs": "EWMSTaskforceUUID",
        }
    )
    if worker.get("do_transfer_worker_stdouterr"):
        out_dir = env_file.parent / "cluster-$(ClusterId)"
        submit["output"] = str(out_dir / "$(ProcId).out")
        submit["error"] = str(out_dir / "$(ProcId).err")
    return submit


def build_job_spec(config: TMSConfig, pending: Mapping[str, Any], job_event_log: Path) -> tuple[JobSpec, int]:
    """Job spec and worker count for a pending-starter answer; writes the env file. Raises TaskforceSpecError."""
    taskforce = pending["taskforce"]
    uuid = str(taskforce["taskforce_uuid"])
    n_workers = taskforce.get("n_workers")
    if not isinstance(n_workers, int) or n_workers < 1:
        raise TaskforceSpecError(f"n_workers must be a positive integer, not {n_workers!r}")
    env = pilot_environment(
        taskforce, pending.get("task_directive") or {}, pending.get("mqprofiles") or [], config.extra_pilot_env
    )
    tf_dir = taskforce_dir(config, uuid)
    env_file = tf_dir / ENV_FILE_NAME
    submit = build_submit_dict(config, taskforce, job_event_log, env_file)
    atomic_write_text(env_file, env_file_text(uuid, env), mode=0o600)
    return JobSpec(taskforce_uuid=uuid, submit_dict=submit, pilot_env=env, taskforce_dir=tf_dir), n_workers
