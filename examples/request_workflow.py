#!/usr/bin/env python3
"""Run one workflow end to end against a WMS: submit it, wait for its public queues, push events in with
oms-mqclient, read every result out and check it, mark the workflow finished, and watch its taskforces end.

    python examples/request_workflow.py examples/workflow-chain.yaml --events 100

The WMS address and token come from --url/--token, else EWMS_URL/EWMS_TOKEN, else the dev stack's env file
(.ewms-dev/env.sh). Exits non-zero on any mismatch or timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mqclient
import yaml

from ewms_client import WMSClient

END_PHASES = {"condor-rm", "condor-complete"}


def has_ended(taskforce: dict[str, Any]) -> bool:
    """Its jobs are gone (removed or completed), or it never had any."""
    return taskforce["phase"] in END_PHASES or (taskforce["phase"] == "pending-stopper" and taskforce["cluster_id"] is None)
EXPECTED: dict[str, Callable[[str], str]] = {
    "workflow-one-task": str.upper,
    "workflow-chain": lambda text: text.upper()[::-1],
}


def say(message: str) -> None:
    """Progress line with elapsed time."""
    print(f"[{time.monotonic() - START:7.1f}s] {message}", flush=True)


START = time.monotonic()


def load_workflow(path: Path) -> dict[str, Any]:
    """A workflow request from a JSON or YAML file."""
    text = path.read_text()
    return dict(yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text))


def credentials(args: argparse.Namespace) -> tuple[str, str]:
    """WMS URL and token from flags, environment, or the dev stack's env file."""
    url, token = args.url or os.environ.get("EWMS_URL"), args.token or os.environ.get("EWMS_TOKEN")
    env_file = Path(args.dev_data_dir) / "env.sh"
    if (not url or not token) and env_file.exists():
        values = dict(line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
        url, token = url or values.get("EWMS_URL"), token or values.get("EWMS_TOKEN")
    if not url or not token:
        sys.exit("error: no WMS address/token: pass --url/--token, set EWMS_URL/EWMS_TOKEN, or run the dev stack")
    return url, token


def _queue(profile: dict[str, Any], timeout: int) -> mqclient.Queue:
    return mqclient.Queue(
        "rabbitmq",
        address=profile["broker_address"],
        name=profile["mqid"],
        auth_token=profile["auth_token"],
        timeout=timeout,
    )


async def push_events(profile: dict[str, Any], events: list[str]) -> None:
    """Send every event to the input queue."""
    async with _queue(profile, 60).open_pub() as pub:
        for index, event in enumerate(events, 1):
            await pub.send(event)
            if index % max(1, len(events) // 5) == 0 or index == len(events):
                say(f"sent {index}/{len(events)} events")


async def read_results(profile: dict[str, Any], n: int, timeout: int) -> list[Any]:
    """Read ``n`` results from the output queue (gives up after ``timeout`` s without a message)."""
    results: list[Any] = []
    async with _queue(profile, timeout).open_sub() as sub:
        async for message in sub:
            results.append(message)
            if len(results) % max(1, n // 5) == 0 or len(results) == n:
                say(f"received {len(results)}/{n} results")
            if len(results) >= n:
                break
    return results


async def watch_until_ended(client: WMSClient, workflow_id: str, timeout: float) -> list[dict[str, Any]]:
    """Poll the workflow's taskforces until all are in an end phase."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        taskforces = await client.taskforces_of(workflow_id)
        phases = ", ".join(sorted(tf["phase"] for tf in taskforces))
        if phases != last:
            say(f"taskforce phases: {phases}")
            last = phases
        if taskforces and all(has_ended(tf) for tf in taskforces):
            return taskforces
        if time.monotonic() > deadline:
            raise TimeoutError(f"taskforces not ended after {timeout}s: {phases}")
        await asyncio.sleep(1)


async def run(url: str, token: str, workflow_file: Path, n_events: int, timeout: int) -> int:
    """The whole story of one workflow; 0 when every result matched."""
    expected = EXPECTED.get(workflow_file.stem, lambda text: text)
    async with WMSClient(url, token) as client:
        created = await client.submit_workflow(load_workflow(workflow_file))
        workflow_id = created["workflow"]["workflow_id"]
        say(f"submitted {workflow_id}: {len(created['taskforces'])} taskforces")
        profiles = {p["alias"]: p for p in await client.wait_for_public_queues(workflow_id, timeout=timeout)}
        say(f"queues active: {', '.join(sorted(profiles))}")
        events = [f"event {i}: the quick brown fox" for i in range(n_events)]
        reader = asyncio.create_task(read_results(profiles["output-queue"], n_events, timeout))
        await push_events(profiles["input-queue"], events)
        results = await reader
        wanted = sorted(expected(e) for e in events)
        got = sorted(str(r) for r in results)
        await client.finish(workflow_id)
        say(f"workflow {workflow_id} marked finished")
        await watch_until_ended(client, workflow_id, timeout)
    if got != wanted:
        missing = len(set(wanted) - set(got))
        say(f"MISMATCH: {len(got)} results, {missing} expected results missing")
        return 1
    say(f"all {n_events} results correct")
    return 0


def main() -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workflow", type=Path, nargs="?", default=Path(__file__).with_name("workflow-chain.yaml"))
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--timeout", type=int, default=180, help="seconds to wait for queues, results, the end")
    parser.add_argument("--url")
    parser.add_argument("--token")
    parser.add_argument("--dev-data-dir", default=".ewms-dev")
    args = parser.parse_args()
    url, token = credentials(args)
    try:
        return asyncio.run(run(url, token, args.workflow, args.events, args.timeout))
    except (TimeoutError, mqclient.broker_client_interface.MQClientException) as exc:
        say(f"FAILED: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
