"""Helpers shared by the fault-injection tests: workflow requests and polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def one_task_workflow(task_args: str, n_workers: int, task_image: str = "/images/stand-in", **pilot_env: Any) -> dict:
    """A workflow of one task at location ``local`` reading public queue ``in`` and writing public queue ``out``."""
    return {
        "public_queue_aliases": ["in", "out"],
        "tasks": [
            {
                "cluster_locations": ["local"],
                "input_queue_aliases": ["in"],
                "output_queue_aliases": ["out"],
                "task_image": task_image,
                "task_args": task_args,
                "n_workers": n_workers,
                "pilot_config": {"environment": pilot_env},
                "worker_config": {
                    "do_transfer_worker_stdouterr": True,
                    "max_worker_runtime": 600,
                    "n_cores": 1,
                    "priority": 10,
                    "worker_disk": "512M",
                    "worker_memory": "1G",
                },
            }
        ],
    }


async def eventually(probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], within: float, what: str) -> T:
    """Call ``probe`` every 0.1 s until ``check`` accepts its value; fails with the last value after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"{what} not reached in {within}s; last: {value!r}"
        await asyncio.sleep(0.1)
