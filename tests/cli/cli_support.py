"""Helpers of the CLI tests: what one run did, workflow request files as users write them, a closed port."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Run:
    """What one ``ewms`` invocation did."""

    code: int
    out: str
    err: str


RunCLI = Callable[..., Coroutine[Any, Any, Run]]

WORKFLOW_YAML = """\
# copy every event of 'in' to 'out', on two clusters
public_queue_aliases: [in, out]
tasks:
  - cluster_locations: [test-alpha, test-beta]
    input_queue_aliases: [in]
    output_queue_aliases: [out]
    task_image: /cvmfs/example/image:1.0
    task_args: "cp {{INFILE}} {{OUTFILE}}"
    n_workers: 3
    worker_config:
      do_transfer_worker_stdouterr: true
      max_worker_runtime: 600
      n_cores: 1
      priority: 99
      worker_disk: 512M
      worker_memory: 512M
"""


def workflow_request(**overrides: Any) -> dict[str, Any]:
    """The request of :data:`WORKFLOW_YAML`, with top-level ``overrides``."""
    request: dict[str, Any] = yaml.safe_load(WORKFLOW_YAML)
    request.update(overrides)
    return request


def write_yaml(directory: Path) -> Path:
    """The YAML request as a file."""
    path = directory / "workflow.yaml"
    path.write_text(WORKFLOW_YAML)
    return path


def write_json(directory: Path, **overrides: Any) -> Path:
    """The request as a JSON file."""
    path = directory / "workflow.json"
    path.write_text(json.dumps(workflow_request(**overrides), indent=2))
    return path


