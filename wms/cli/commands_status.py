"""``ewms status``: a workflow's health, one progress line per task (bar, done, failed, waiting, rate, time left, and
whether any worker reads its input queues while events wait) and its taskforces as a table, optionally refreshed
until they have all ended. Failing and failed states, failed counts and unconsumed queues are red when the output
is a colour terminal (``--color``; ``NO_COLOR`` is honoured)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from ewms_client import WMSClient
from wms.cli.argtypes import positive_float
from wms.cli.exits import CLIError, Exit
from wms.cli.output import add_json_option, ago, duration, print_json, shorten, table, when
from wms.cli.settings import add_connection_options, connect

END_PHASES = frozenset({"pending-stopper", "condor-rm", "condor-complete"})
DEFAULT_WATCH_INTERVAL = 5.0
ERROR_WIDTH = 60
CLEAR_SCREEN = "\x1b[H\x1b[2J"
RED, RESET = "\x1b[31m", "\x1b[0m"
BAR_WIDTH = 24


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status``."""
    p = subparsers.add_parser(
        "status",
        help="show a workflow's progress and taskforces",
        description="Show a workflow, its health, one progress line per task (done, failed, waiting, in flight, rate, "
        "time left) and its taskforces: location, phase, workers, health, worker statuses and top error.",
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
    p.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="mark failures in red: always, never, or auto (a terminal, unless NO_COLOR is set; the default)",
    )
    add_json_option(
        p, help="print the workflow, its taskforces and its progress as JSON (one line per refresh with --watch)"
    )
    add_connection_options(p)
    p.set_defaults(handler=status)


async def snapshot(wms: WMSClient, workflow_id: str) -> dict[str, Any]:
    """The workflow, all its taskforces and its progress.

    The taskforces are read first: a deactivation marks the workflow before it stops the taskforces, so taskforces
    seen stopped come with the workflow seen deactivated (the other order could show stopped taskforces under an
    active workflow as the last refresh of ``--watch``)."""
    taskforces = await wms.taskforces_of(workflow_id)
    workflow = await wms.get_workflow(workflow_id)
    return {"workflow": workflow, "taskforces": taskforces, "progress": await wms.workflow_progress(workflow_id)}


def use_colour(choice: str) -> bool:
    """Whether to print ANSI colours: ``always``, ``never``, or on a terminal without ``NO_COLOR`` or ``TERM=dumb``."""
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def red(text: str, colour: bool) -> str:
    """``text`` in red when colouring."""
    return f"{RED}{text}{RESET}" if colour else text


def progress_bar(done: int, failed: int, total: int, colour: bool) -> str:
    """``[####!!......]``: done ``#``, failed ``!`` (red), the rest ``.``, over ``total`` events."""
    if total <= 0:
        return "[" + "." * BAR_WIDTH + "]"
    n_done = round(BAR_WIDTH * done / total)
    n_failed = min(round(BAR_WIDTH * (done + failed) / total) - n_done, BAR_WIDTH - n_done)
    if failed and not n_failed and n_done < BAR_WIDTH:
        n_failed = 1  # a failure is never invisible
    rest = BAR_WIDTH - n_done - n_failed
    return "[" + "#" * n_done + red("!" * n_failed, colour and n_failed > 0) + "." * rest + "]"


def health_note(health: str, reason: str | None, colour: bool) -> str:
    """``""`` when ok, else ``  FAILING: reason`` (red)."""
    if health == "ok":
        return ""
    return "  " + red(f"{health.upper()}: {shorten(reason or '', ERROR_WIDTH * 2)}", colour)


def task_line(task: dict[str, Any], colour: bool) -> str:
    """One task: its label, bar, percentage settled, done, failed, waiting, in flight, rate, time left, how long it
    has run, its health and any unconsumed queue."""
    done, failed, in_flight, waiting = task["done"], task["failed"], task["in_flight"], task["waiting"]
    total = done + failed + in_flight + (waiting or 0)
    percent = f"{100 * (done + failed) / total:3.0f}%" if total else "  -%"
    failed_text = red(f"failed {failed}", colour and failed > 0)
    waiting_text = "?" if waiting is None else str(waiting)
    return (
        f"{task_label(task)}  {progress_bar(done, failed, total, colour)} {percent}  done {done}  {failed_text}  "
        f"waiting {waiting_text}  in flight {in_flight}  {task['rate']:.2f}/s  ETA {duration(task['eta_seconds'])}  "
        + task_span(task)
        + health_note(task["health"], task["health_reason"], colour)
        + unconsumed_note(task, colour)
    )


def task_label(task: dict[str, Any]) -> str:
    """The task's id, its name when it has one, and its queues: ``TK-1 upper (in -> mid)``."""
    name = f" {task['name']}" if task.get("name") else ""
    flow = f"{', '.join(task['input_queues']) or '-'} -> {', '.join(task.get('output_queues') or []) or '-'}"
    return f"{task['task_id']}{name} ({flow})"


def task_span(task: dict[str, Any], now: float | None = None) -> str:
    """How long the task has run since its first cluster was submitted (``not started`` before)."""
    started, ended = task.get("started_ts"), task.get("ended_ts")
    if started is None:
        return "not started"
    if ended is not None:
        return f"ran {duration(ended - started)}"
    return f"running for {duration((now or time.time()) - started)}"


def unconsumed_note(task: dict[str, Any], colour: bool) -> str:
    """``  NO CONSUMER on <queues>`` (red) while events wait that no worker reads, else ``""``."""
    if task.get("consumers") != 0 or not task["waiting"]:
        return ""
    return "  " + red(f"NO CONSUMER on {', '.join(task['input_queues'])}", colour)


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


def render(snap: dict[str, Any], colour: bool = False) -> str:
    """The workflow line (with its health), one progress line per task, and the taskforce table."""
    wf, progress = snap["workflow"], snap["progress"]
    state = f"{wf['deactivated']} at {when(wf['deactivated_ts'])}" if wf["deactivated"] else "active"
    head = f"workflow {wf['workflow_id']}: {state} (owner {wf['owner']}, priority {wf['priority']}, "
    head += f"created {when(wf['timestamp'])}, {ago(wf['timestamp'])})"
    head += health_note(progress["health"], progress["health_reason"], colour)
    health = {tf["taskforce_uuid"]: tf["health"] for task in progress["tasks"] for tf in task["taskforces"]}
    rows = [
        [
            tf["taskforce_uuid"],
            tf["cluster_location"],
            tf["phase"],
            tf["n_workers"],
            health.get(tf["taskforce_uuid"], "-"),
            summarize_statuses(tf["compound_statuses"]),
            top_error(tf["top_task_errors"]),
        ]
        for tf in snap["taskforces"]
    ]
    headers = ["TASKFORCE", "LOCATION", "PHASE", "WORKERS", "HEALTH", "STATUSES", "TOP ERROR"]
    lines = [task_line(task, colour) for task in progress["tasks"]]
    if not progress["queue_depths_available"]:
        lines.append("(queue depths unavailable from this MQS: waiting unknown)")
    body = table(headers, rows)
    if colour:  # after alignment, so the escape codes do not count as width
        body = "\n".join(_red_health(line) for line in body.splitlines())
    return "\n".join([head, *lines, body])


def _red_health(line: str) -> str:
    for word in ("  failing  ", "  failed  "):
        line = line.replace(word, "  " + red(word.strip(), True) + "  ", 1)
    return line


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
                print(render(snap, use_colour(args.color)))
            return Exit.OK
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        clear = sys.stdout.isatty() and not args.json
        while True:
            snap = await snapshot(wms, args.workflow_id)
            if args.json:
                print(json.dumps(snap), flush=True)
            else:
                stamp = time.strftime("%H:%M:%S")
                text = render(snap, use_colour(args.color))
                print(f"{CLEAR_SCREEN if clear else ''}{text}\n[{stamp}, every {args.watch:g} s]", flush=True)
            if all_ended(snap):
                return Exit.OK
            if deadline is not None and time.monotonic() >= deadline:
                raise CLIError(f"not every taskforce ended within {args.timeout:g} s", Exit.TIMEOUT)
            wait = args.watch if deadline is None else min(args.watch, max(deadline - time.monotonic(), 0))
            await asyncio.sleep(wait)
