"""``ewms logs`` and ``ewms retry``: a taskforce's job output, and a fresh taskforce for a failed one."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from wms.cli.argtypes import positive_float
from wms.cli.exits import CLIError, Exit
from wms.cli.output import add_json_option, note, plural, print_json, when
from wms.cli.settings import add_connection_options, connect

FOLLOW_INTERVAL = 2.0  # seconds between reads with --follow (the TMS ships running tails every few seconds)
STREAMS = ("stdout_tail", "stderr_tail")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``logs`` and ``retry``."""
    p = subparsers.add_parser(
        "logs",
        help="print the output of a taskforce's jobs (running ones too)",
        description="Print the tails of each job's stdout and stderr and its last task error, as the TMS ships them: "
        "every few seconds while a job runs, once more when it ended.",
    )
    p.add_argument("taskforce_uuid", metavar="TASKFORCE")
    p.add_argument("--job", metavar="N", help="only job N: its proc number (0, 1, ...) or CLUSTER.PROC")
    p.add_argument(
        "--follow",
        "-f",
        nargs="?",
        type=positive_float,
        const=FOLLOW_INTERVAL,
        metavar="SECONDS",
        help=f"keep printing new output as it comes (read every SECONDS, default {FOLLOW_INTERVAL:g}) until Ctrl-C",
    )
    add_json_option(p, help="print the job logs as JSON (not with --follow)")
    add_connection_options(p)
    p.set_defaults(handler=logs)

    p = subparsers.add_parser(
        "retry",
        help="retry a failed taskforce",
        description="Create a fresh taskforce for the task and location of a failed one (the old one is stopped). "
        "The two are linked: the new one's retry_of, the old one's retried_as.",
    )
    p.add_argument("taskforce_uuid", metavar="TASKFORCE")
    add_json_option(p, help="print the new taskforce as JSON")
    add_connection_options(p)
    p.set_defaults(handler=retry)


def selected(jobs: list[dict[str, Any]], job: str | None) -> list[dict[str, Any]]:
    """The jobs matching ``--job`` (a proc number or ``CLUSTER.PROC``); all without it."""
    if job is None:
        return jobs
    return [j for j in jobs if j["job_id"] == job or j["job_id"].partition(".")[2] == job]


def job_state(job: dict[str, Any]) -> str:
    """``running``, or how and when the job ended."""
    if job["ended_ts"] is None:
        return "running"
    code = "" if job["exit_code"] is None else f", exit code {job['exit_code']}"
    return f"ended {when(job['ended_ts'])}{code}"


def new_text(before: str, now: str) -> str:
    """What a tail shows beyond what was printed of it before (``before``): the part after their longest overlap
    (the end of ``before`` that starts ``now``), or the whole tail after ``[...]`` when none is left (output went by
    faster than the tail is long)."""
    if now.startswith(before):
        return now[len(before) :]
    overlap = _overlap(before, now)
    if overlap:
        return now[overlap:]
    return "[...]\n" + now if now else ""


def _overlap(before: str, now: str) -> int:
    """The length of the longest end of ``before`` that is also a start of ``now`` (Knuth-Morris-Pratt)."""
    fail = [0] * (len(now) + 1)  # fail[i]: longest proper border of now[:i]
    k = 0
    for i in range(1, len(now)):
        while k and now[i] != now[k]:
            k = fail[k]
        if now[i] == now[k]:
            k += 1
        fail[i + 1] = k
    k = 0
    for char in before:
        if k == len(now):
            k = fail[k]
        while k and char != now[k]:
            k = fail[k]
        if char == now[k]:
            k += 1
    return k


def _section(title: str, text: str) -> str:
    return f"--- {title} ---\n{text}" + ("" if text.endswith("\n") else "\n")


def render(job: dict[str, Any]) -> str:
    """A job's header line and its non-empty outputs."""
    out = f"=== job {job['job_id']}: {job_state(job)} ===\n"
    for name in STREAMS:
        if job[name]:
            out += _section(name.removesuffix("_tail"), job[name])
    if job["task_error"]:
        out += _section("task error", job["task_error"])
    return out


class Follower:
    """Prints each job's output once, then only what is new: a job's header when it appears or ends, the new part
    of each tail, a task error when it changes."""

    def __init__(self) -> None:
        self._printed: dict[str, dict[str, Any]] = {}

    def update(self, jobs: list[dict[str, Any]]) -> str:
        """The text to print for this read of the logs."""
        out = ""
        for job in jobs:
            before = self._printed.get(job["job_id"])
            if before is None:
                out += render(job)
                self._printed[job["job_id"]] = job
                continue
            for name in STREAMS:
                if more := new_text(before[name], job[name]):
                    out += f"[{job['job_id']} {name.removesuffix('_tail')}] " + more
                    out += "" if more.endswith("\n") else "\n"
            if job["task_error"] and job["task_error"] != before["task_error"]:
                out += _section(f"{job['job_id']} task error", job["task_error"])
            if job["ended_ts"] is not None and before["ended_ts"] is None:
                out += f"=== job {job['job_id']}: {job_state(job)} ===\n"
            self._printed[job["job_id"]] = job
        return out


async def logs(args: argparse.Namespace) -> int:
    """Print the logs once, or follow them until Ctrl-C."""
    if args.follow is not None and args.json:
        raise CLIError("--json cannot be used with --follow", Exit.USAGE)
    async with connect(args) as wms:
        jobs = selected(await wms.job_logs(args.taskforce_uuid), args.job)
        if args.json:
            print_json(jobs)
            return Exit.OK
        if args.follow is None:
            if not jobs:
                what = f"job {args.job}" if args.job else "any job"
                note(f"no output of {what} of {args.taskforce_uuid} yet")
            print("".join(render(job) for job in jobs), end="")
            return Exit.OK
        follower = Follower()
        while True:
            print(follower.update(jobs), end="", flush=True)
            await asyncio.sleep(args.follow)
            jobs = selected(await wms.job_logs(args.taskforce_uuid), args.job)


async def retry(args: argparse.Namespace) -> int:
    """Retry the taskforce; print the new one."""
    async with connect(args) as wms:
        new = await wms.retry(args.taskforce_uuid)
    if args.json:
        print_json(new)
    else:
        print(
            f"taskforce {args.taskforce_uuid} retried as {new['taskforce_uuid']} at {new['cluster_location']}: "
            f"{plural(new['n_workers'], 'worker')}, {new['phase']}"
        )
    return Exit.OK
