"""Turn a ``POST /v0/workflows`` request into a Workflow, its TaskDirectives and Taskforces.

Persisted attributes follow upstream EWMS: ``task_*``/``init_*`` go to the TaskDirective; ``pilot_config`` (as the
user sent it, with its defaults), ``worker_config`` and ``n_workers`` go to each Taskforce. The pilot's environment
is built from the task directive by the TMS at submit (``tms.submit_description.pilot_environment``).
"""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from wms import ids
from wms.config import WMSConfig
from wms.database.store import (
    LABELS_REV,
    MQ_ACTIVATED_TS,
    MQ_FAILURES,
    MQ_RETIRED,
    MQ_RETRY_AT,
    N_ADDED,
    N_RETRIES,
    RETRIED_AS,
    RM_FAILURES,
    SUBMIT_FAILURES,
    Doc,
)
from wms.lifecycle import Phase, log_entry
from wms.validation import PolicyError, check_task

# set by the TMS (from the task directive and the queues): users may not set them in pilot_config.environment
RESERVED_PILOT_ENV = frozenset(
    {
        "EWMS_PILOT_TASK_IMAGE",
        "EWMS_PILOT_TASK_ARGS",
        "EWMS_PILOT_TASK_ENV_JSON",
        "EWMS_PILOT_INIT_IMAGE",
        "EWMS_PILOT_INIT_ARGS",
        "EWMS_PILOT_INIT_ENV_JSON",
    }
)
RESERVED_PILOT_ENV_PREFIXES = ("EWMS_PILOT_QUEUE_",)


class TranslationError(ValueError):
    """The request is well-formed but cannot be turned into a workflow (HTTP 400)."""


class QuotaError(ValueError):
    """The request is valid but exceeds a configured limit or breaks the operator's policy (HTTP 422)."""


@dataclass
class WorkflowPlan:
    """A checked request with its new ids, before queues are reserved."""

    request: dict[str, Any]
    owner: str
    workflow_id: str
    priority: int
    queue_aliases: list[str]
    public_aliases: list[str]
    schedds: dict[str, str] = field(default_factory=dict)
    default_n_workers: int = 1


def _check_pilot_env(index: int, env: dict[str, Any]) -> None:
    for key in env:
        if key in RESERVED_PILOT_ENV or key.startswith(RESERVED_PILOT_ENV_PREFIXES):
            raise TranslationError(f"tasks[{index}].pilot_config.environment may not set {key} (set by EWMS)")


def plan_workflow(request: dict[str, Any], owner: str, config: WMSConfig) -> WorkflowPlan:
    """Check what the schema cannot (locations, reserved env, operator policy, alias use); choose ids and priority."""
    if len(request["tasks"]) > config.max_tasks_per_workflow:
        raise QuotaError(
            f"{len(request['tasks'])} tasks exceed the limit of {config.max_tasks_per_workflow} per workflow"
        )
    aliases: list[str] = []
    for index, task in enumerate(request["tasks"]):
        if (task.get("n_workers") or 0) > config.max_workers_per_taskforce:
            raise QuotaError(
                f"tasks[{index}].n_workers={task['n_workers']} exceeds the limit of {config.max_workers_per_taskforce}"
            )
        for location in task["cluster_locations"]:
            if location not in config.clusters:
                known = ", ".join(sorted(config.clusters))
                raise TranslationError(f"tasks[{index}]: unknown cluster location {location!r} (known: {known})")
        _check_pilot_env(index, task.get("pilot_config", {}).get("environment", {}))
        try:
            check_task(index, task, config)
        except PolicyError as exc:
            raise QuotaError(str(exc)) from exc
        for alias in task["input_queue_aliases"] + task["output_queue_aliases"]:
            if alias not in aliases:
                aliases.append(alias)
    unused = [a for a in request["public_queue_aliases"] if a not in aliases]
    if unused:
        raise TranslationError(
            "public_queue_aliases not used by any task: " + ", ".join(_with_near_match(a, aliases) for a in unused)
        )
    priority = min(int(request.get("priority", config.default_priority)), config.max_priority)
    return WorkflowPlan(
        request=request,
        owner=owner,
        workflow_id=ids.workflow_id(),
        priority=priority,
        queue_aliases=aliases,
        public_aliases=list(request["public_queue_aliases"]),
        schedds=dict(config.clusters),
        default_n_workers=config.default_n_workers,
    )


def _with_near_match(alias: str, used: list[str]) -> str:
    """``alias``, followed by ``(did you mean 'x'?)`` when a task uses a similar alias (a likely typo)."""
    near = difflib.get_close_matches(alias, used, n=1)
    return f"{alias} (did you mean {near[0]!r}?)" if near else alias


def make_taskforce(
    task_directive: Doc,
    *,
    cluster_location: str,
    schedd: str,
    n_workers: int,
    priority: int,
    pilot_config: dict[str, Any],
    worker_config: dict[str, Any],
    source_entity: str,
    phase: Phase = Phase.PRE_MQ_ACTIVATION,
    context: str = "taskforce created",
    uuid: str | None = None,
    retry_of: str | None = None,
) -> Doc:
    """A new Taskforce for one task directive at one cluster location (a new uuid unless one is given); ``retry_of``:
    the failed taskforce it replaces."""
    return {
        "taskforce_uuid": uuid or ids.taskforce_uuid(),
        "task_id": task_directive["task_id"],
        "workflow_id": task_directive["workflow_id"],
        "timestamp": time.time(),
        "priority": priority,
        "collector": None,
        "schedd": schedd,
        "cluster_location": cluster_location,
        "n_workers": n_workers,
        "pilot_config": pilot_config,
        "worker_config": worker_config,
        "cluster_id": None,
        "submit_dict": {},
        "job_event_log_fpath": "",
        "phase": str(phase),
        "phase_change_log": [log_entry(phase, True, source_entity, context)],
        "compound_statuses": {},
        "top_task_errors": {},
        "owner": task_directive["owner"],
        SUBMIT_FAILURES: 0,
        RM_FAILURES: 0,
        RETRIED_AS: None,
        "retry_of": retry_of,
    }


def build_documents(plan: WorkflowPlan, mqids: dict[str, str]) -> tuple[Doc, list[Doc], list[Doc]]:
    """The workflow, task directive and taskforce documents, given each alias's reserved queue id."""
    now = time.time()
    workflow = {
        "workflow_id": plan.workflow_id,
        "timestamp": now,
        "priority": plan.priority,
        "deactivated": None,
        "deactivated_ts": None,
        "owner": plan.owner,
        "name": plan.request.get("name"),
        "labels": dict(plan.request.get("labels", {})),
        MQ_ACTIVATED_TS: None,
        MQ_FAILURES: 0,
        MQ_RETRY_AT: 0.0,
        MQ_RETIRED: False,
        LABELS_REV: 0,
    }
    directives: list[Doc] = []
    taskforces: list[Doc] = []
    for task in plan.request["tasks"]:
        directive = {
            "task_id": ids.task_id(),
            "workflow_id": plan.workflow_id,
            "name": task.get("name"),
            "timestamp": now,
            "cluster_locations": list(task["cluster_locations"]),
            "task_image": task["task_image"],
            "task_args": task["task_args"],
            "task_env": dict(task.get("task_env", {})),
            "init_image": task.get("init_image", ""),
            "init_args": task.get("init_args", ""),
            "init_env": dict(task.get("init_env", {})),
            "input_queues": [mqids[a] for a in task["input_queue_aliases"]],
            "output_queues": [mqids[a] for a in task["output_queue_aliases"]],
            "input_queue_aliases": list(task["input_queue_aliases"]),
            "output_queue_aliases": list(task["output_queue_aliases"]),
            "owner": plan.owner,
            N_RETRIES: 0,
            N_ADDED: 0,
        }
        directives.append(directive)
        user_pilot = task.get("pilot_config", {})
        pilot_config = {
            "tag": user_pilot.get("tag", "latest"),
            "image_source": user_pilot.get("image_source", "cvmfs"),
            "environment": dict(user_pilot.get("environment", {})),
            "input_files": list(user_pilot.get("input_files", [])),
        }
        worker_config = {"condor_requirements": "", **task["worker_config"]}
        n_workers = task.get("n_workers")
        for location in task["cluster_locations"]:
            taskforces.append(
                make_taskforce(
                    directive,
                    cluster_location=location,
                    schedd=plan.schedds[location],
                    n_workers=int(n_workers) if n_workers is not None else plan.default_n_workers,
                    priority=plan.priority,
                    pilot_config=json.loads(json.dumps(pilot_config)),
                    worker_config=dict(worker_config),
                    source_entity="USER",  # upstream: the creating role's name
                )
            )
    return workflow, directives, taskforces
