"""Objects for tests and benchmarks, in the shapes of the OpenAPI document: workflow requests (the shape of
``examples/workflow-one-task.json``), and task directives and taskforces as the WMS stores them."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

WORKER_CONFIG = {
    "do_transfer_worker_stdouterr": True,
    "max_worker_runtime": 600,
    "n_cores": 1,
    "priority": 99,
    "worker_disk": "512M",
    "worker_memory": "512M",
}


def task_request(
    locations: Sequence[str] = ("test-alpha",),
    inputs: Sequence[str] = ("in",),
    outputs: Sequence[str] = ("out",),
    **overrides: Any,
) -> dict[str, Any]:
    """One task of a workflow request, copying each event from ``inputs`` to ``outputs`` with 3 workers at each of
    ``locations``; ``overrides`` replace its fields."""
    task: dict[str, Any] = {
        "cluster_locations": list(locations),
        "input_queue_aliases": list(inputs),
        "output_queue_aliases": list(outputs),
        "task_image": "/cvmfs/example/image:1.0",
        "task_args": "cp {{INFILE}} {{OUTFILE}}",
        "task_env": {"MODE": "fast"},
        "n_workers": 3,
        "worker_config": copy.deepcopy(WORKER_CONFIG),
    }
    task.update(overrides)
    return task


def workflow_request(locations: Sequence[str] = ("test-alpha",), **overrides: Any) -> dict[str, Any]:
    """One :func:`task_request` at ``locations`` reading ``in`` and writing ``out`` (both public); ``overrides``
    replace top-level fields (``tasks`` included)."""
    request: dict[str, Any] = {"public_queue_aliases": ["in", "out"], "tasks": [task_request(locations)]}
    request.update(overrides)
    return request


def task_directive(task_id: str, workflow_id: str, **overrides: Any) -> dict[str, Any]:
    """A TaskDirectiveObject as the WMS stores it (task ``ok`` in image ``/images/echo``, no queues);
    ``overrides`` replace its fields."""
    doc: dict[str, Any] = {
        "task_id": task_id,
        "workflow_id": workflow_id,
        "timestamp": time.time(),
        "cluster_locations": ["test"],
        "task_image": "/images/echo",
        "task_args": "ok",
        "task_env": {},
        "init_image": "",
        "init_args": "",
        "init_env": {},
        "input_queues": [],
        "output_queues": [],
        "owner": "alice",
    }
    doc.update(overrides)
    return doc


def taskforce(uuid: str, schedd: str = "ap.test", n_workers: int = 2, **overrides: Any) -> dict[str, Any]:
    """A TaskforceObject as the WMS stores it, in phase ``pending-starter``; ``overrides`` replace its fields."""
    doc: dict[str, Any] = {
        "taskforce_uuid": uuid,
        "task_id": f"TK-{uuid}",
        "workflow_id": f"WF-{uuid}",
        "timestamp": time.time(),
        "priority": 10,
        "collector": None,
        "schedd": schedd,
        "cluster_location": "test",
        "n_workers": n_workers,
        "pilot_config": {
            "tag": "1.2.3",
            "image_source": "cvmfs",
            "environment": {},
            "input_files": [],
        },
        "worker_config": {
            "do_transfer_worker_stdouterr": True,
            "max_worker_runtime": 3600,
            "n_cores": 1,
            "priority": 10,
            "worker_disk": "1G",
            "worker_memory": "512M",
            "condor_requirements": "",
        },
        "cluster_id": None,
        "submit_dict": {},
        "job_event_log_fpath": "",
        "phase": "pending-starter",
        "phase_change_log": [],
        "compound_statuses": {},
        "top_task_errors": {},
        "owner": "alice",
        "retry_of": None,
        "retried_as": None,
    }
    doc.update(overrides)
    return doc
