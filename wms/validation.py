"""Operator policy on a workflow request, checked at submit before any side effect (settings: Docs/operations.md).

The schema (Docs/openapi.json) already refused control characters, non-identifier environment keys and malformed
sizes; this module checks what depends on the operator's settings: which input files a pilot may ship, which pilot
variables a user may set, the size ranges, the ``condor_requirements`` grammar and what each location can run.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

import classad2

from wms.config import IMAGES, WMSConfig

# loader, interpreter and shell variables that would let a user run code inside the pilot itself
DENIED_PILOT_ENV = frozenset({"PATH", "HOME", "SHELL", "ENV", "BASH_ENV", "IFS", "CDPATH", "PS4", "TMPDIR"})
# (the variables the WMS and TMS set, such as the queue tokens, are refused as reserved by wms.translation)
DENIED_PILOT_ENV_PREFIXES = ("LD_", "PYTHON", "_EWMS_PILOT_", "EWMS_PILOT_HTCHIRP", "BASH_FUNC_")
_SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?(?:([KkMmGgTt])[Ii]?[Bb]?|[Bb])?")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
MIN_SIZE = 1024**2  # 1 MiB: the smallest worker memory or disk
_URL_RE = re.compile(r"^([a-z][a-z0-9+.-]*)://")


class PolicyError(ValueError):
    """The request is valid but refused by the operator's policy (HTTP 422); the message names the rule."""


def check_task(index: int, task: Mapping[str, Any], config: WMSConfig) -> None:
    """Every policy check on ``tasks[index]`` of a workflow request."""
    where = f"tasks[{index}]"
    pilot = task.get("pilot_config") or {}
    for key in pilot.get("environment") or {}:
        check_pilot_env_key(key, config, f"{where}.pilot_config.environment")
    for position, name in enumerate(pilot.get("input_files") or []):
        check_input_file(name, config, f"{where}.pilot_config.input_files[{position}]")
    worker = task["worker_config"]
    for name, limit_mb in (("worker_memory", config.max_worker_memory_mb), ("worker_disk", config.max_worker_disk_mb)):
        if not MIN_SIZE <= size_bytes(worker[name]) <= limit_mb * 1024**2:
            raise PolicyError(f"{where}.worker_config.{name}={worker[name]!r}: must be between 1M and {limit_mb}M")
    requirements = worker.get("condor_requirements") or ""
    if requirements:
        try:
            classad2.ExprTree(f"({requirements})")
        except Exception as exc:  # classad2 raises its own ClassAdException (not exported by the bindings)
            raise PolicyError(
                f"{where}.worker_config.condor_requirements is not a ClassAd expression: {requirements!r}"
            ) from exc
    for location in task["cluster_locations"]:
        refusal = location_refusal(location, task, config, where)
        if refusal:
            raise PolicyError(refusal)



def size_bytes(value: str | int) -> int:
    """Bytes in a size the schema accepted (``512M``, ``4 GB``, ``2GiB``, or a byte count; units of 1024)."""
    if isinstance(value, int):
        return value
    match = _SIZE_RE.fullmatch(value)
    if not match:  # the schema's pattern refused it already; kept for callers that skip the schema
        raise PolicyError(f"not a size: {value!r} (use e.g. 512M, 4GB, 2GiB)")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


def check_pilot_env_key(key: str, config: WMSConfig, where: str) -> None:
    """Refuse a pilot variable that EWMS or the operator controls (the schema already required an identifier)."""
    denied = DENIED_PILOT_ENV | config.pilot_env_deny
    prefixes = DENIED_PILOT_ENV_PREFIXES + config.pilot_env_deny_prefixes
    if key in denied or key.startswith(prefixes):
        raise PolicyError(f"{where} may not set {key}: denied pilot variable (loader, interpreter or pilot control)")


def check_input_file(name: str, config: WMSConfig, where: str) -> None:
    """An input file must be a URL with an allowed scheme or a path under an allowed prefix (after normalizing)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in name) or "," in name:
        raise PolicyError(f"{where}: commas and control characters are not allowed in input files")
    url = _URL_RE.match(name)
    if url:
        if url.group(1) not in config.input_file_schemes:
            allowed = ", ".join(f"{s}://" for s in sorted(config.input_file_schemes)) or "none"
            raise PolicyError(f"{where}: URL scheme {url.group(1)}:// is not allowed (allowed: {allowed})")
        return
    normal = posixpath.normpath(name)
    if not name.startswith("/") or not any(
        normal == prefix or normal.startswith(prefix.rstrip("/") + "/") for prefix in config.input_file_prefixes
    ):
        allowed = ", ".join(config.input_file_prefixes) or "none"
        raise PolicyError(f"{where}: {name!r} is not under an allowed input file prefix (allowed: {allowed})")


def location_refusal(location: str, task: Mapping[str, Any], config: WMSConfig, where: str) -> str | None:
    """Why ``location`` cannot run the task (a task request or a task directive), if it cannot: a location without
    the ``images`` capability runs processes, so no container image for the task or init task."""
    capabilities = config.location_capabilities(location)
    if IMAGES in capabilities:
        return None
    for field in ("task_image", "init_image"):
        image = str(task.get(field) or "")
        if image and not is_local_directory_path(image):
            named = ", ".join(sorted(capabilities)) or "none"
            return (
                f"{where}.{field}={image!r}: location {location!r} runs no container images (its capabilities:"
                f" {named}); leave it empty or name a local directory such as a venv"
            )
    return None


def is_local_directory_path(value: str) -> bool:
    """An absolute path that is not an image reference (no tag or digest, not a CVMFS container)."""
    return value.startswith("/") and ":" not in value and "@" not in value and not value.startswith("/cvmfs/")
