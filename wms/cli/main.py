"""``ewms``: the command-line entry point. Parses arguments, runs the chosen command and maps failures to exit codes."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType, ModuleType

from ewms_client import WMSError
from wms.cli import (
    commands_dev,
    commands_login,
    commands_query,
    commands_queues,
    commands_status,
    commands_taskforces,
    commands_workflows,
)
from wms.cli.exits import EPILOG, CLIError, Exit, exit_code_for
from wms.cli.settings import add_connection_options, environment, is_local, resolve

# each module's register(subparsers) adds its sub-commands; add a module here to add commands
COMMAND_MODULES: tuple[ModuleType, ...] = (
    commands_workflows,
    commands_status,
    commands_taskforces,
    commands_queues,
    commands_query,
    commands_login,
    commands_dev,
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="ewms",
        description="Submit and follow EWMS workflows; send and receive the events of their public queues.\n\n"
        "The WMS address and token come from --url/--token, else EWMS_URL/EWMS_TOKEN, else the config file\n"
        '$EWMS_CONFIG or ~/.config/ewms/config.json ({"url": ..., "token": ...}), else (the token) `ewms login`.\n'
        "See Docs/cli.md.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_connection_options(parser, top_level=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


async def run(args: argparse.Namespace) -> int:
    """Run the parsed command; report failures on stderr and return the exit code."""
    try:
        code: int = await args.handler(args)
        return code
    except WMSError as exc:
        hint = " (check --token / EWMS_TOKEN)" if exc.status == 401 else ""
        if exc.title == "Unreachable" and is_local(resolve(args).url):
            hint = "\nhint: nothing answers there; start a dev stack with `ewms dev up` (then source .ewms-dev/env.sh)"
        return fail(f"{exc}{hint}", exit_code_for(exc))
    except CLIError as exc:
        return fail(str(exc), exc.code)


def fail(message: str, code: int) -> int:
    """Print ``error: message`` on stderr; return ``code``."""
    print(f"error: {message}", file=sys.stderr)
    return code


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ewms`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return Exit.USAGE
    try:
        logging.basicConfig(level=environment().log_level)
    except CLIError as exc:
        return fail(str(exc), exc.code)
    # The broker client blocks the event loop while it waits for events, so Ctrl-C must interrupt at once
    # (asyncio's own SIGINT handler would only cancel the task once the loop runs again).
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _interrupt) if in_main_thread else None
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return fail("interrupted", Exit.INTERRUPTED)
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return Exit.OK
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
