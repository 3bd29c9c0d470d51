"""Workflow requests for tests."""

from __future__ import annotations

import copy
from typing import Any

WORKER_CONFIG = {
    "do_transfer_worker_stdouterr": True,
    "max_worker_runtime": 600,
    "n_cores": 1,
    "priority": 99,
    "worker_disk": "512M",
    "worker_memory": "512M",
}


def workflow_request(locations: tuple[str, ...] = ("test-alpha",), **overrides: Any) -> dict[str, Any]:
    """One task reading ``in`` and writing ``out`` (both public) at the given locations."""
    request: dict[str, Any] = {
        "public_queue_aliases": ["in", "out"],
        "tasks": [
            {
                "cluster_locations": list(locations),
                "input_queue_aliases": ["in"],
                "output_queue_aliases": ["out"],
                "task_image": "/cvmfs/example/image:1.0",
                "task_args": "cp {{INFILE}} {{OUTFILE}}",
                "task_env": {"MODE": "fast"},
                "n_workers": 3,
                "worker_config": copy.deepcopy(WORKER_CONFIG),
            }
        ],
    }
    request.update(overrides)
    return request


def chained_request() -> dict[str, Any]:
    """Two tasks chained through the private queue ``mid``."""
    first = workflow_request()["tasks"][0]
    second = copy.deepcopy(first)
    first["output_queue_aliases"] = ["mid"]
    second["input_queue_aliases"] = ["mid"]
    second["cluster_locations"] = ["test-beta"]
    return {"public_queue_aliases": ["in", "out"], "tasks": [first, second]}


# the example request of the seed README, exactly as written there
SEED_README_REQUEST = {
    "public_queue_aliases": ["input-queue", "output-queue"],
    "tasks": [
        {
            "cluster_locations": ["sub-2"],
            "input_queue_aliases": ["input-queue"],
            "output_queue_aliases": ["output-queue"],
            "task_image": "/cvmfs/icecube.opensciencegrid.org/containers/path/to/my-apptainer-container:1.2.3",
            "task_args": "cp {{INFILE}} {{OUTFILE}}",
            "n_workers": 1000,
            "worker_config": {
                "do_transfer_worker_stdouterr": True,
                "max_worker_runtime": 600,
                "n_cores": 1,
                "priority": 99,
                "worker_disk": "512M",
                "worker_memory": "512M",
            },
        }
    ],
}
