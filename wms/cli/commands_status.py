"""``ewms status``: a workflow's taskforces as a table, optionally refreshed until they have all ended."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from ewms_client import WMSClient
from wms.cli.argtypes import positive_float
from wms.cli.exits import CLIError, Exit
from wms.cli.output import add_json_option, print_json, shorten, table, when
from wms.cli.settings import add_connection_options, connect

END_PHASES = frozenset({"pending-stopper", "condor-rm", "condor-complete"})
DEFAULT_WATCH_INTERVAL = 5.0
ERROR_WIDTH = 60
CLEAR_SCREEN = "\x1b[H\x1b[2J"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status``."""
    p = subparsers.add_parser(
        "status",
        help="show a workflow's taskforces",
        description="Show a workflow and its taskforces: location, phase, workers, worker statuses and top error.",
    )
    p.add_argument("workflow_id", metavar="WORKFLOW_ID")
    p.add_argument(
        "--watch",
        nargs="?",
        type=positive_float,
        const=DEFAULT_WATCH_INTERVAL,
        metavar="SECONDS",
        help=f"refresh every SECONDS (default {DEFAULT_WATCH_INTERVAL:g}) until every taskforce has ended "
        f"({', '.join(sorted(END_PHASES))}) or Ctrl-C",
    )
    p.add_argument(
        "--timeout", type=positive_float, metavar="SECONDS", help="with --watch: give up after SECONDS (exit 4)"
    )
    add_json_option(p, help="print the workflow and its taskforces as JSON (one line per refresh with --watch)")
    add_connection_options(p)
    p.set_defaults(handler=status)


async def snapshot(wms: WMSClient, workflow_id: str) -> dict[str, Any]:
    """The workflow and all its taskforces."""
    workflow = await wms.get_workflow(workflow_id)
    return {"workflow": workflow, "taskforces": await wms.taskforces_of(workflow_id)}


def summarize_statuses(compound: dict[str, dict[str, int]]) -> str:
    """``{"RUNNING": {"Tasking": 3}, "HELD: memory": {"null": 1}}`` -> ``RUNNING: Tasking=3; HELD: memory: null=1``."""
    parts = [
        f"{condor}: " + ", ".join(f"{pilot}={n}" for pilot, n in pilots.items()) for condor, pilots in compound.items()
    ]
    return "; ".join(parts) or "-"


def top_error(errors: dict[str, int]) -> str:
    """The most frequent task error and its count, shortened."""
    if not errors:
        return "-"
    message, count = max(errors.items(), key=lambda item: item[1])
    return shorten(f"{message} (x{count})", ERROR_WIDTH)


def render(snap: dict[str, Any]) -> str:
    """The workflow line and the taskforce table."""
    wf = snap["workflow"]
    state = f"{wf['deactivated']} at {when(wf['deactivated_ts'])}" if wf["deactivated"] else "active"
    head = f"workflow {wf['workflow_id']}: {state} (owner {wf['owner']}, priority {wf['priority']}, "
    head += f"created {when(wf['timestamp'])})"
    rows = [
        [
            tf["taskforce_uuid"],
            tf["cluster_location"],
            tf["phase"],
            tf["n_workers"],
            summarize_statuses(tf["compound_statuses"]),
            top_error(tf["top_task_errors"]),
        ]
        for tf in snap["taskforces"]
    ]
    headers = ["TASKFORCE", "LOCATION", "PHASE", "WORKERS", "STATUSES", "TOP ERROR"]
    return head + "\n" + table(headers, rows)


def all_ended(snap: dict[str, Any]) -> bool:
    """True when every taskforce is in an end phase."""
    return all(tf["phase"] in END_PHASES for tf in snap["taskforces"])


async def status(args: argparse.Namespace) -> int:
    """Print the status once, or refresh it until every taskforce has ended."""
    async with connect(args) as wms:
        if args.watch is None:
            snap = await snapshot(wms, args.workflow_id)
            if args.json:
                print_json(snap)
            else:
                print(render(snap))
            return Exit.OK
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        clear = sys.stdout.isatty() and not args.json
        while True:
            snap = await snapshot(wms, args.workflow_id)
            if args.json:
                print(json.dumps(snap), flush=True)
            else:
                stamp = time.strftime("%H:%M:%S")
                print(f"{CLEAR_SCREEN if clear else ''}{render(snap)}\n[{stamp}, every {args.watch:g} s]", flush=True)
            if all_ended(snap):
                return Exit.OK
            if deadline is not None and time.monotonic() >= deadline:
                raise CLIError(f"not every taskforce ended within {args.timeout:g} s", Exit.TIMEOUT)
            wait = args.watch if deadline is None else min(args.watch, max(deadline - time.monotonic(), 0))
            await asyncio.sleep(wait)
