"""Helpers shared by the fault-injection tests: workflow requests and polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from factories import workflow_request

T = TypeVar("T")


def one_task_workflow(task_args: str, n_workers: int, task_image: str = "/images/stand-in", **pilot_env: Any) -> dict:
    """The shared one-task request (public queues ``in`` and ``out``) at location ``local``, which the test TMS
    serves, running ``task_args`` with extra pilot environment."""
    request = workflow_request(("local",))
    request["tasks"][0].update(
        task_args=task_args, n_workers=n_workers, task_image=task_image, pilot_config={"environment": pilot_env}
    )
    return request


async def eventually(probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], within: float, what: str) -> T:
    """Call ``probe`` every 0.1 s until ``check`` accepts its value; fails with the last value after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"{what} not reached in {within}s; last: {value!r}"
        await asyncio.sleep(0.1)
