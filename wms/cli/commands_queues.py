"""``ewms queues``, ``send`` and ``receive``: a workflow's public queues and their events."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mqclient.broker_client_interface import Message

from ewms_client import WMSClient
from ewms_wire.failed_events import FAILED_EVENTS_ALIAS, FAILED_HEADER
from wms.cli.argtypes import positive_float, positive_int
from wms.cli.exits import CLIError, Exit
from wms.cli.mq import IDLE_SECONDS, broker_errors, find_queue, open_queue
from wms.cli.output import add_json_option, note, print_json, table
from wms.cli.settings import add_connection_options, connect

ACTIVATION_WAIT = 60.0  # default seconds to wait for a queue to be activated
HIDDEN = "***"
LIVE_PHASES = ("pre-mq-activation", "pre-launch", "pending-starter", "condor-submit")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the queue commands."""
    p = subparsers.add_parser(
        "queues",
        help="list a workflow's public queues",
        description="List the public queues of a workflow (alias, queue id, broker address, activated).",
    )
    p.add_argument("workflow_id", metavar="WORKFLOW_ID")
    p.add_argument("--show-token", action="store_true", help="include each queue's broker token")
    p.add_argument("--wait", type=positive_float, metavar="SECONDS", help="first wait until every queue is activated")
    add_json_option(p, help=f"print the profiles as JSON (tokens shown as {HIDDEN} unless --show-token)")
    add_connection_options(p)
    p.set_defaults(handler=queues)

    wait_help = f"seconds to wait for the queue to be activated (default {ACTIVATION_WAIT:g})"
    p = subparsers.add_parser(
        "send",
        help="send events (one per stdin line) to a public queue",
        description="Send each non-empty line of stdin as one event to the workflow's public queue ALIAS.",
    )
    p.add_argument("workflow_id", metavar="WORKFLOW_ID")
    p.add_argument("alias", metavar="ALIAS", help="public queue alias")
    p.add_argument("--json", action="store_true", help="parse each line as JSON (default: send it as a string)")
    p.add_argument("--wait", type=positive_float, default=ACTIVATION_WAIT, metavar="SECONDS", help=wait_help)
    add_connection_options(p)
    p.set_defaults(handler=send)

    p = subparsers.add_parser(
        "receive",
        help="print events from a public queue, one per line",
        description="Print events from the workflow's public queue ALIAS (or, with --failed, its failed events) as "
        "they arrive, one per line (strings as they are, other data JSON-encoded). Each event is taken off the queue "
        "after it is printed.",
    )
    p.add_argument("workflow_id", metavar="WORKFLOW_ID")
    p.add_argument("alias", metavar="ALIAS", nargs="?", help="public queue alias (not with --failed)")
    p.add_argument(
        "--failed",
        action="store_true",
        help=f"read the failed-events queue ({FAILED_EVENTS_ALIAS}): one JSON line per event, "
        '{"data": <the input>, "error": <its ewms-failed header: error, kind, exit_code, stderr_tail, input_queue, '
        "...>}; POST /v0/workflows/ID/actions/requeue-failed-events sends them back to their tasks",
    )
    p.add_argument("-n", type=positive_int, metavar="N", help="stop after N events (exit 4 if --timeout hits first)")
    p.add_argument(
        "--timeout",
        type=positive_int,
        metavar="SECONDS",
        help="stop when no event came for SECONDS (default: wait until N events, or forever)",
    )
    p.add_argument("--json", action="store_true", help="JSON-encode every event, strings too")
    p.add_argument("--wait", type=positive_float, default=ACTIVATION_WAIT, metavar="SECONDS", help=wait_help)
    add_connection_options(p)
    p.set_defaults(handler=receive)


async def queues(args: argparse.Namespace) -> int:
    """Print the public queue profiles."""
    async with connect(args) as wms:
        if args.wait is None:
            profiles = await wms.public_queues(args.workflow_id)
        else:
            try:
                profiles = await wms.wait_for_public_queues(args.workflow_id, args.wait)
            except TimeoutError as exc:
                raise CLIError(str(exc), Exit.TIMEOUT) from exc
    if not args.show_token:
        profiles = [{**p, "auth_token": HIDDEN if p["auth_token"] else None} for p in profiles]
    if args.json:
        print_json(profiles)
        return Exit.OK
    headers = ["ALIAS", "MQID", "ADDRESS", "ACTIVATED"] + (["TOKEN"] if args.show_token else [])
    rows = [
        [p["alias"], p["mqid"], p["broker_address"], "yes" if p["is_activated"] else "no"]
        + ([p["auth_token"]] if args.show_token else [])
        for p in profiles
    ]
    print(table(headers, rows))
    return Exit.OK


async def send(args: argparse.Namespace) -> int:
    """Publish stdin's lines as events."""
    async with connect(args) as wms:
        profile = await find_queue(wms, args.workflow_id, args.alias, args.wait)
    sent = 0
    with broker_errors(profile):
        async with open_queue(profile).open_pub() as pub:
            for lineno, line in enumerate(sys.stdin, 1):
                text = line.rstrip("\r\n")
                if not text.strip():
                    continue
                await pub.send(parse_line(text, lineno, sent) if args.json else text)
                sent += 1
    note(f"sent {sent} event(s) to {args.alias} ({profile['mqid']})")
    async with connect(args) as wms:
        note(await consumer_note(wms, args.workflow_id, args.alias, profile["mqid"]))
    return Exit.OK


async def consumer_note(wms: WMSClient, workflow_id: str, alias: str, mqid: str) -> str:
    """Who will consume the queue: a task with live taskforces, a task whose workers the WMS starts (elastic
    workers), or no task at all."""
    readers = [d async for d in wms.query("task-directives", {"workflow_id": workflow_id}) if mqid in d["input_queues"]]
    if not readers:
        return f"note: no task of {workflow_id} reads {alias}: nothing will consume these events"
    taskforces = await wms.taskforces_of(workflow_id)
    idle = [
        d["task_id"]
        for d in readers
        if not any(tf["task_id"] == d["task_id"] and tf["phase"] in LIVE_PHASES for tf in taskforces)
    ]
    if idle:
        return (
            f"note: no worker consumes {alias} now (task {', '.join(idle)} has no live taskforce); the WMS starts "
            "workers for events that wait unconsumed (elastic workers)"
        )
    return f"{alias} is read by task {', '.join(d['task_id'] for d in readers)} (live taskforces)"


def parse_line(text: str, lineno: int, sent: int) -> Any:
    """One stdin line as JSON."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CLIError(f"stdin line {lineno} is not valid JSON ({exc}); {sent} event(s) were sent", Exit.USAGE) from exc


def format_event(data: Any, as_json: bool) -> str:
    """A string event as it is (unless ``as_json``); anything else JSON-encoded."""
    return data if isinstance(data, str) and not as_json else json.dumps(data)


def format_failed(msg: Message) -> str:
    """A failed event as one JSON line: its data and its error header."""
    headers = msg.headers if isinstance(msg.headers, dict) else {}
    return json.dumps({"data": msg.data, "error": headers.get(FAILED_HEADER)})


async def receive(args: argparse.Namespace) -> int:
    """Print events until N arrived, the queue stayed idle for --timeout seconds, or Ctrl-C."""
    if bool(args.failed) == bool(args.alias):
        raise CLIError("give a queue ALIAS or --failed (not both)", Exit.USAGE)
    alias = FAILED_EVENTS_ALIAS if args.failed else args.alias
    async with connect(args) as wms:
        profile = await find_queue(wms, args.workflow_id, alias, args.wait)
    received = 0
    with broker_errors(profile):
        while True:  # manual acking: ack only once printed, and let Ctrl-C through (open_sub would swallow it)
            async with open_queue(profile, args.timeout or IDLE_SECONDS).open_sub_manual_acking() as sub:
                async for msg in sub.iter_messages():
                    print(format_failed(msg) if args.failed else format_event(msg.data, args.json), flush=True)
                    await sub.ack(msg)
                    received += 1
                    if received == args.n:
                        return Exit.OK
            if args.timeout is not None:  # else subscribe again and keep waiting
                break
    if args.n is not None:
        raise CLIError(f"no event for {args.timeout} s: received {received} of {args.n}", Exit.TIMEOUT)
    note(f"no event for {args.timeout} s: received {received}")
    return Exit.OK
