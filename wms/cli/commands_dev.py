"""``ewms dev up|down|env``: the whole system on this machine (see ewms_dev/devstack.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ewms_dev.devstack import STATE_FILE, DevStack, StackState, make_data_dir, running_state
from wms.cli.exits import CLIError, Exit

DEFAULT_DIR = ".ewms-dev"


def register(subparsers: Any) -> None:
    """Add the ``dev`` command group."""
    dev = subparsers.add_parser("dev", help="run the whole stack on this machine (database, broker, WMS, TMS)")
    commands = dev.add_subparsers(dest="dev_command", metavar="DEV_COMMAND", required=True)
    up = commands.add_parser("up", help="start everything; foreground until Ctrl-C unless --detach")
    up.add_argument("--data-dir", default=DEFAULT_DIR, help=f"state of every part (default {DEFAULT_DIR})")
    up.add_argument("--detach", action="store_true", help="start in the background and return once ready")
    up.add_argument("--max-local-jobs", type=int, default=4, help="pilots the local TMS runs at once")
    up.add_argument("--port", type=int, default=0, help="WMS port (default: the previous one, else a free one)")
    up.add_argument(
        "--locations", type=_positive, default=1,
        help="access points, each a TMS of its own: location local, then local-2, local-3, ... (default 1)",
    )  # fmt: skip
    up.set_defaults(handler=_up)
    down = commands.add_parser("down", help="stop a stack started with `ewms dev up`")
    down.add_argument("--data-dir", default=DEFAULT_DIR)
    down.set_defaults(handler=_down)
    env = commands.add_parser("env", help="print shell exports of the WMS URL and a user token")
    env.add_argument("--data-dir", default=DEFAULT_DIR)
    env.set_defaults(handler=_env)


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw} is not a positive number")
    return value


def dashboard_link(state: StackState) -> str:
    """The dashboard address with the dev user's token in the fragment (the page signs in with it; a fragment is
    never sent to a server)."""
    return f"{state.url}/ui/#token={state.user_token}"


def _print_ready(state: StackState) -> None:
    print(f"WMS:      {state.url}/v0/   (metrics {state.url}/metrics)")
    print(f"dashboard: {dashboard_link(state)}")
    print(f"broker:   127.0.0.1:{state.broker['amqp_port']} (management 127.0.0.1:{state.broker['management_port']})")
    print(f"MongoDB:  mongodb://127.0.0.1:{state.mongo_port}")
    print(f"TMS:      one per location: {', '.join(state.tms_pids)}")
    print(f"logs:     {state.data_dir}/wms.log, {state.data_dir}/tms*.log")
    print(f"user token (also in {state.data_dir}/env.sh):")
    print(f"  export EWMS_URL={state.url}")
    print(f"  export EWMS_TOKEN={state.user_token}", flush=True)


def _already_running(data_dir: str) -> bool:
    """Say so (with its addresses) when a stack runs on ``data_dir``."""
    state = running_state(data_dir)
    if state is None:
        return False
    print(f"a dev stack is already running on {state.data_dir} (pid {state.supervisor_pid}):")
    _print_ready(state)
    return True


async def _up(args: argparse.Namespace) -> int:
    if _already_running(args.data_dir):
        return Exit.OK
    if args.detach:
        return _up_detached(args)
    stack = DevStack(args.data_dir, max_local_jobs=args.max_local_jobs, wms_port=args.port, locations=args.locations)
    try:
        state = stack.up()
    except (RuntimeError, TimeoutError, OSError) as exc:
        raise CLIError(f"dev stack did not start: {exc}", Exit.UNAVAILABLE) from exc
    _print_ready(state)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    code = Exit.OK
    try:
        while not stop.is_set():
            dead = stack.dead_parts()
            if dead:
                print(
                    f"error: {', '.join(dead)} exited; stopping the stack (see logs in {state.data_dir})",
                    file=sys.stderr,
                )
                code = Exit.UNAVAILABLE
                break
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        stack.down()
    return code


def _up_detached(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    make_data_dir(data_dir)
    state_path = data_dir / STATE_FILE
    started_after = time.time()
    cmd = [sys.executable, "-m", "wms.cli", "dev", "up", "--data-dir", str(data_dir)]
    cmd += ["--max-local-jobs", str(args.max_local_jobs), "--port", str(args.port), "--locations", str(args.locations)]
    log = open(data_dir / "stack.log", "ab")
    earlier = log.tell()  # the log is appended across runs: on failure show only this run's part
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(data_dir / "stack.log", "rb") as ours:
                ours.seek(earlier)
                tail = ours.read().decode(errors="replace")[-2000:]
            raise CLIError(f"dev stack did not start (exit {proc.returncode}):\n{tail}", Exit.UNAVAILABLE)
        if state_path.exists() and state_path.stat().st_mtime >= started_after:
            state = StackState(**json.loads(state_path.read_text()))
            if state.supervisor_pid == proc.pid:
                _print_ready(state)
                print(
                    f"running in the background (pid {proc.pid}); stop with: ewms dev down --data-dir {args.data_dir}"
                )
                return Exit.OK
        time.sleep(0.3)
    proc.terminate()
    raise CLIError("dev stack not ready after 180 s; see stack.log in the data dir", Exit.TIMEOUT)


async def _down(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    state_path = data_dir / STATE_FILE
    if not state_path.exists():
        print(f"no dev stack recorded in {data_dir}")
        return Exit.OK
    state = StackState(**json.loads(state_path.read_text()))
    try:
        os.kill(state.supervisor_pid, signal.SIGTERM)  # the supervisor stops its children itself
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            os.kill(state.supervisor_pid, 0)
            await asyncio.sleep(0.3)
    except ProcessLookupError:
        pass
    DevStack(data_dir).down()  # whatever is still recorded as running
    print(f"dev stack on {data_dir} stopped")
    return Exit.OK


async def _env(args: argparse.Namespace) -> int:
    env_file = Path(args.data_dir) / "env.sh"
    if not env_file.exists():
        raise CLIError(f"no dev stack in {args.data_dir}: run `ewms dev up` first", Exit.USAGE)
    print(env_file.read_text(), end="")
    if running_state(args.data_dir) is None:
        print(
            f"warning: the dev stack in {args.data_dir} is not running; start it with `ewms dev up`", file=sys.stderr
        )
    return Exit.OK
