"""``ewms submit``, ``finish``, ``abort``, ``label`` and ``add-workers``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from wms.cli.argtypes import positive_int
from wms.cli.exits import CLIError, Exit
from wms.cli.output import add_json_option, note, plural, print_json
from wms.cli.settings import add_connection_options, connect


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the workflow commands."""
    p = subparsers.add_parser(
        "submit",
        help="submit a workflow request (JSON or YAML file)",
        description="Submit a workflow request (see WorkflowRequest in Docs/openapi.json). Files ending in .json are "
        "read as JSON, anything else (and '-' for stdin) as YAML.",
    )
    p.add_argument("file", help="workflow request file (.json, .yaml, .yml, or - for stdin)")
    add_json_option(p)
    add_connection_options(p)
    p.set_defaults(handler=submit)

    for name, verb in (("finish", "mark a workflow finished"), ("abort", "abort a workflow")):
        p = subparsers.add_parser(name, help=verb, description=f"{verb.capitalize()}: its taskforces are stopped.")
        p.add_argument("workflow_id", metavar="WORKFLOW_ID")
        add_json_option(p)
        add_connection_options(p)
        p.set_defaults(handler=deactivate, action=name)

    p = subparsers.add_parser(
        "label",
        help="set or remove a workflow's labels",
        description="Set labels (KEY=VALUE) and remove others (--remove KEY); the other labels are kept.",
        epilog="example: ewms label WF-... campaign=2026a owner=ana --remove draft",
    )
    p.add_argument("workflow_id", metavar="WORKFLOW_ID")
    p.add_argument("labels", nargs="*", metavar="KEY=VALUE", help="labels to set")
    p.add_argument("--remove", action="append", default=[], metavar="KEY", help="a label to remove (repeatable)")
    add_json_option(p, help="print the updated workflow as JSON")
    add_connection_options(p)
    p.set_defaults(handler=label)

    p = subparsers.add_parser(
        "add-workers",
        help="start one more taskforce for a task",
        description="Create one more taskforce of N workers for a task at a cluster location.",
    )
    p.add_argument("task_id", metavar="TASK_ID")
    p.add_argument("location", metavar="LOCATION", help="cluster location")
    p.add_argument("n_workers", metavar="N", type=positive_int, help="number of workers")
    add_json_option(p)
    add_connection_options(p)
    p.set_defaults(handler=add_workers)


def load_request(path: str) -> dict[str, Any]:
    """Read a workflow request from a JSON or YAML file (``-``: stdin)."""
    as_json = path.endswith(".json")
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"cannot read {path}: {exc}", Exit.USAGE) from exc
    try:
        data = json.loads(text) if as_json else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        where = str(exc).replace('"<unicode string>"', "stdin" if path == "-" else path)  # YAML's own name for it
        raise CLIError(f"{path} is not valid {'JSON' if as_json else 'YAML'}: {where}", Exit.USAGE) from exc
    if not isinstance(data, dict):
        raise CLIError(
            f"{path} must hold a workflow request (a mapping with public_queue_aliases and tasks)", Exit.USAGE
        )
    return data


async def submit(args: argparse.Namespace) -> int:
    """Submit the request; print the new ids."""
    request = load_request(args.file)
    async with connect(args) as wms:
        created = await wms.submit_workflow(request)
    if args.json:
        print_json(created)
        return Exit.OK
    workflow = created["workflow"]
    print(f"workflow {workflow['workflow_id']}{named(workflow)} (priority {workflow['priority']})")
    for task in created["task_directives"]:
        print(f"  task {task['task_id']}{named(task)}: {task['task_image']}{queues(task)}")
        for tf in created["taskforces"]:
            if tf["task_id"] == task["task_id"]:
                workers = plural(tf["n_workers"], "worker")
                print(f"    taskforce {tf['taskforce_uuid']} at {tf['cluster_location']}: {workers}")
    note(f"follow it with: ewms status {workflow['workflow_id']} --watch")
    return Exit.OK


def named(doc: dict[str, Any]) -> str:
    """`` "name"`` for an object with a human name, else nothing."""
    return f' "{doc["name"]}"' if doc.get("name") else ""


def queues(task: dict[str, Any]) -> str:
    """``, in -> out`` by queue alias (nothing for a task stored without aliases)."""
    if "input_queue_aliases" not in task:
        return ""
    return f", {','.join(task['input_queue_aliases']) or '-'} -> {','.join(task['output_queue_aliases']) or '-'}"


def parse_labels(pairs: list[str], remove: list[str]) -> dict[str, str | None]:
    """``KEY=VALUE`` pairs and keys to remove as a labels update (the WMS checks the keys and values)."""
    labels: dict[str, str | None] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CLIError(f"expected KEY=VALUE, got {pair!r} (remove a label with --remove KEY)", Exit.USAGE)
        labels[key] = value
    for key in remove:
        if key in labels:
            raise CLIError(f"label {key!r} is both set and removed", Exit.USAGE)
        labels[key] = None
    if not labels:
        raise CLIError("nothing to change: give KEY=VALUE pairs or --remove KEY", Exit.USAGE)
    return labels


async def label(args: argparse.Namespace) -> int:
    """Set and remove labels; print the resulting labels."""
    changes = parse_labels(args.labels, args.remove)
    async with connect(args) as wms:
        workflow = await wms.set_labels(args.workflow_id, changes)
    if args.json:
        print_json(workflow)
    else:
        shown = " ".join(f"{k}={v}" for k, v in workflow["labels"].items()) or "none"
        print(f"workflow {workflow['workflow_id']} labels: {shown}")
    return Exit.OK


async def deactivate(args: argparse.Namespace) -> int:
    """Finish or abort a workflow."""
    async with connect(args) as wms:
        result = await (wms.finish if args.action == "finish" else wms.abort)(args.workflow_id)
    if args.json:
        print_json(result)
    else:
        done = "finished" if args.action == "finish" else "aborted"
        print(f"workflow {result['workflow_id']} {done}: {result['n_taskforces']} taskforce(s) sent to stop")
    return Exit.OK


async def add_workers(args: argparse.Namespace) -> int:
    """Add a taskforce; print it."""
    async with connect(args) as wms:
        tf = await wms.add_workers(args.task_id, args.location, args.n_workers)
    if args.json:
        print_json(tf)
    else:
        workers = plural(tf["n_workers"], "worker")
        print(f"taskforce {tf['taskforce_uuid']} at {tf['cluster_location']}: {workers}, {tf['phase']}")
    return Exit.OK
