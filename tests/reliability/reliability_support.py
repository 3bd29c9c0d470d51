"""Helpers shared by the fault-injection tests: workflow requests."""

from __future__ import annotations

from typing import Any

from factories import workflow_request


def one_task_workflow(task_args: str, n_workers: int, task_image: str = "/images/stand-in", **pilot_env: Any) -> dict:
    """The shared one-task request (public queues ``in`` and ``out``) at location ``local``, which the test TMS
    serves, running ``task_args`` with extra pilot environment."""
    request = workflow_request(("local",))
    request["tasks"][0].update(
        task_args=task_args, n_workers=n_workers, task_image=task_image, pilot_config={"environment": pilot_env}
    )
    return request
