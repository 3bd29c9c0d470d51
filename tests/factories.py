"""Workflow requests for tests (the shared ones are in :mod:`ewms_dev.factories`)."""

from __future__ import annotations

import copy
from typing import Any

from ewms_dev.factories import WORKER_CONFIG, task_request, workflow_request

__all__ = ["SEED_README_REQUEST", "chained_request", "one_task_workflow", "workflow_request"]


def chained_request() -> dict[str, Any]:
    """Two tasks chained through the private queue ``mid``."""
    return {
        "public_queue_aliases": ["in", "out"],
        "tasks": [task_request(outputs=["mid"]), task_request(("test-beta",), inputs=["mid"])],
    }


def one_task_workflow(task_args: str, n_workers: int, task_image: str = "/images/stand-in", **pilot_env: Any) -> dict:
    """One task at location ``local`` (which the tests' TMS serves) running ``task_args``, with extra pilot
    environment; public queues ``in`` and ``out``."""
    task = task_request(
        ("local",), task_args=task_args, n_workers=n_workers, task_image=task_image,
        pilot_config={"environment": pilot_env},
    )  # fmt: skip
    return workflow_request(tasks=[task])


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
            "worker_config": copy.deepcopy(WORKER_CONFIG),
        }
    ],
}
