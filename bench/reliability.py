#!/usr/bin/env python3
"""Reliability bench: a soak under mixed load, the fault scenarios, and optionally a long fuzz run.

    .venv/bin/python bench/reliability.py [--duration 120] [--clients 64] [--warmup 20] [--fuzz-examples N]

1. Soak: a WMS process (with its own nx-27017 on disk and its own RabbitMQ node, all on loopback) serves
   ``--clients`` concurrent users for ``--duration`` seconds. Each user submits workflows, reads them and their
   taskforces, queries, reports statuses as the TMS and finishes its workflows (at most 3 active at once); one more
   client plays the TMS (pending-starter -> condor-submit, pending-stopper -> condor-rm), so taskforces go through
   their whole lifecycle. Every answer must have the expected status (errors: 0). The WMS's RSS and open file
   descriptors (``/proc/<pid>/fd``) are sampled every 2 s: RSS may grow by less than 10 % from the end of the
   warm-up to the end, and once the clients have disconnected the WMS may hold at most 16 more descriptors than
   after the warm-up (when it held one connection per client besides its grown database pool): a leak per
   request or per workflow would show up as hundreds. The CPU share of each process and the taskforces by phase at
   the end are reported too.
   After the load, the taskforces stopped before any cluster was submitted (their workflow finished first) must all
   have been ended by the daemons once ``UNSUBMITTED_STOP_GRACE_SECONDS`` (5 s here) and the next sweep have passed.
2. Faults: runs ``pytest`` on the fault tests (TMS killed between submit and confirm, database down 10 s, broker
   restarted under running pilots, the WMS instance running the daemons killed or paused beside another, status
   reports refused with 413, 401 and 503 after a restart with 5,000 taskforces, the TMS's token expiring mid-run, a
   pilot outliving its queue tokens ten times) and collects the figures each scenario reports (faults injected, items
   lost, duplicates, server errors, leader failovers and their time, reports refused and statuses recovered, token
   renewals).
3. Fuzz (``--fuzz-examples N``): schemathesis with N examples per operation against the soaked WMS, every route.

Writes ``bench/results/reliability.json`` and prints it; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ewms_dev import broker_node, processes
from ewms_dev import mongo_server as embedded
from ewms_dev.factories import task_request, workflow_request
from ewms_dev.service_env import wms_env
from wms.auth import Role, issue_token

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "reliability.json"
AUDIENCE = "ewms-reliability"
FAULT_TESTS = (
    "tests/reliability",  # crashes, outages, broker restart, daemon failover
    "tests/tms/test_tms_status_reports.py",  # status reports refused (413, 401, 503) and sent again
    "tests/e2e/test_token_renewal_e2e.py",  # a pilot renewing its queue tokens ten times over
)
SCHEDD = "ap.reliability"
MAX_ACTIVE = 3  # active workflows per simulated user
STOP_GRACE = 5.0  # UNSUBMITTED_STOP_GRACE_SECONDS of the soaked WMS
RSS_GROWTH_LIMIT = 0.10
FD_SLACK = 16
CLK_TCK = os.sysconf("SC_CLK_TCK")
FUZZ_CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)
WORKFLOW = workflow_request(tasks=[task_request(("local",), task_image="/images/reliability", n_workers=2)])


def say(message: str) -> None:
    """Progress on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- the service under test ----------------------------------------------------------------------------------------


@dataclass
class Service:
    """A WMS process with its own database server and broker node."""

    url: str
    proc: subprocess.Popen[bytes]
    auth_key: str
    log: Path
    groups: dict[str, int]  # part -> process group id, for CPU accounting

    def token(self, role: Role, subject: str) -> str:
        """A bearer token the WMS accepts."""
        return issue_token(self.auth_key, subject, role, AUDIENCE, ttl=3600)


@contextmanager
def running_service(work: Path) -> Iterator[Service]:
    """Start nx-27017, a RabbitMQ node and ``python -m wms`` under ``work``; stop them all afterwards."""
    auth_key, broker_key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    mongo = embedded.start(work / "mongo")
    node = None
    proc = None
    try:
        node = broker_node.start(work / "rmq", broker_key)
        port = processes.free_port()
        env = {
            **os.environ,
            **wms_env(mongo.uri, node, auth_key, AUDIENCE, {"local": SCHEDD}, port),
            "MQ_DELETE_GRACE_SECONDS": "0",
            "MQS_HOUSEKEEPING_INTERVAL_SECONDS": "2",
            "DAEMON_POLL_SECONDS": "0.5",
            "UNSUBMITTED_STOP_GRACE_SECONDS": str(STOP_GRACE),
            "LOG_LEVEL": "WARNING",
        }
        log = work / "wms.log"
        proc = processes.start_wms(env, log)
        groups = {"wms": proc.pid, "mongo": mongo.pid, "broker": node.pid}
        yield Service(f"http://127.0.0.1:{port}", proc, auth_key, log, groups)
    finally:
        if proc is not None:
            processes.stop(proc.pid, timeout=30)
        if node is not None:
            broker_node.stop(node)
        embedded.stop(mongo)


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    """Open file descriptors of a process."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time used so far by the live processes of a process group."""
    total = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


# ---- the soak ------------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Calls made, by operation: counts, latencies and unexpected answers."""

    calls: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        """Per operation: calls, p50 and p99 latency (ms); plus errors and a few samples."""
        per_op = {}
        for op, values in sorted(self.latencies.items()):
            ordered = sorted(values)
            per_op[op] = {
                "calls": self.calls[op],
                "p50_ms": round(ordered[len(ordered) // 2] * 1000, 1),
                "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
            }
        return {
            "calls": sum(self.calls.values()),
            "errors": sum(self.errors.values()),
            "error_samples": dict(self.errors.most_common(5)),
            "by_operation": per_op,
        }


class Caller:
    """Makes one kind of caller's requests and records every answer in the tally."""

    def __init__(self, http: httpx.AsyncClient, token: str, tally: Tally) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"}
        self.tally = tally

    async def call(self, op: str, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        """The JSON answer, or None (and an error counted) when the answer is not ``expect``."""
        started = time.perf_counter()
        try:
            response = await self.http.request(method, path, json=body, headers=self.headers)
        except httpx.HTTPError as exc:
            self.tally.errors[f"{op}: {type(exc).__name__}: {exc}"[:200]] += 1
            return None
        finally:
            self.tally.calls[op] += 1
            self.tally.latencies.setdefault(op, []).append(time.perf_counter() - started)
        if response.status_code != expect:
            self.tally.errors[f"{op}: {response.status_code} {response.text[:150]}"] += 1
            return None
        return response.json()


class User:
    """A user who keeps a few workflows active and works with them; also reports statuses as the TMS would."""

    def __init__(self, user: Caller, tms: Caller, rng: random.Random) -> None:
        self.user = user
        self.tms = tms
        self.rng = rng
        self.active: list[tuple[str, list[str]]] = []  # (workflow id, taskforce uuids)

    async def step(self) -> None:
        """One operation, chosen at random among those that make sense now."""
        if not self.active:
            return await self.submit()
        if len(self.active) >= MAX_ACTIVE:
            return await self.finish()
        workflow_id, uuids = self.rng.choice(self.active)
        roll = self.rng.random()
        if roll < 0.02:
            await self.submit()
        elif roll < 0.04:
            await self.finish()
        elif roll < 0.35:
            await self.user.call("get-workflow", "GET", f"/v0/workflows/{workflow_id}")
        elif roll < 0.60:
            await self.user.call("get-taskforce", "GET", f"/v0/taskforces/{self.rng.choice(uuids)}")
        elif roll < 0.70:
            query = {"query": {"workflow_id": workflow_id}}
            await self.user.call("query-taskforces", "POST", "/v0/query/taskforces", query)
        elif roll < 0.80:
            await self.user.call("query-workflows", "POST", "/v0/query/workflows", {"query": {}, "limit": 10})
        else:
            running = self.rng.randint(0, 2)
            report = {
                "compound_statuses_by_taskforce": {
                    uuid: {"RUNNING": {"Tasking": running}, "IDLE": {"null": 2 - running}} for uuid in uuids
                },
                "top_task_errors_by_taskforce": {uuid: {} for uuid in uuids},
            }
            await self.tms.call("report-statuses", "POST", "/v0/tms/statuses/taskforces", report)

    async def submit(self) -> None:
        created = await self.user.call("submit", "POST", "/v0/workflows", WORKFLOW)
        if created is not None:
            uuids = [tf["taskforce_uuid"] for tf in created["taskforces"]]
            self.active.append((created["workflow"]["workflow_id"], uuids))

    async def finish(self) -> None:
        workflow_id, _ = self.active.pop(0)
        await self.user.call("finish", "POST", f"/v0/workflows/{workflow_id}/actions/finished", {})


async def tms_actor(tms: Caller, until: float) -> int:
    """Submit and remove (pretend) clusters for every taskforce offered; the number of TMS actions."""
    actions, cluster = 0, 0
    while time.monotonic() < until:
        did = False
        pending = await tms.call("tms-pending-starter", "GET", f"/v0/tms/pending-starter/taskforces?schedd={SCHEDD}")
        if pending:
            cluster += 1
            uuid = pending["taskforce"]["taskforce_uuid"]
            body = {"cluster_id": cluster, "n_workers": 2, "submit_dict": {}, "job_event_log_fpath": "/bench/x.jel"}
            await tms.call("tms-condor-submit", "POST", f"/v0/tms/condor-submit/taskforces/{uuid}", body)
            actions, did = actions + 1, True
        stopping = await tms.call("tms-pending-stopper", "GET", f"/v0/tms/pending-stopper/taskforces?schedd={SCHEDD}")
        if stopping:
            uuid = stopping["taskforce_uuid"]
            await tms.call("tms-condor-rm", "POST", f"/v0/tms/condor-rm/taskforces/{uuid}", {})
            actions, did = actions + 1, True
        if not did:
            await asyncio.sleep(0.2)
    return actions


async def count_taskforces(http: httpx.AsyncClient, token: str, query: dict[str, Any]) -> int:
    """The number of taskforces matching ``query``, page by page through ``POST /v0/query/taskforces``."""
    body: dict[str, Any] = {"query": query, "projection": ["taskforce_uuid"], "limit": 1000}
    total = 0
    while True:
        response = await http.post("/v0/query/taskforces", json=body, headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        page = response.json()
        total += len(page["taskforces"])
        if page["next_after"] is None:
            return total
        body["after"] = page["next_after"]


async def unsubmitted_stops(service: Service) -> dict[str, int]:
    """After the load: taskforces stopped before any cluster was submitted (their workflow finished first), ended
    by the daemons, and those still waiting once the grace and the next sweep (every half grace) have passed."""
    await asyncio.sleep(STOP_GRACE * 2 + 2)
    token = service.token(Role.ADMIN, "reliability-admin")
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
        ended = await count_taskforces(http, token, {"phase": "condor-complete", "cluster_id": None})
        waiting = await count_taskforces(http, token, {"phase": "pending-stopper", "cluster_id": None})
    return {"stuck_taskforces_ended": ended, "stuck_taskforces_left": waiting}


async def soak(service: Service, clients: int, duration: float, warmup: float) -> dict[str, Any]:
    """Run the mixed load and sample the WMS process; the figures and whether the checks passed."""
    pid = service.proc.pid
    tally = Tally()
    samples: list[tuple[float, float, int]] = []  # (seconds since start, RSS MB, open fds)
    fds_before = open_fds(pid)
    tms_token = service.token(Role.TMS, "reliability-tms")
    async with contextlib.AsyncExitStack() as stack:
        # one connection per client, as independent clients would have
        https = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=service.url, timeout=30))
            for _ in range(clients + 1)
        ]
        tms = Caller(https[-1], tms_token, tally)
        users = [
            User(
                Caller(https[i], service.token(Role.USER, f"user-{i:02d}"), tally),
                Caller(https[i], tms_token, tally),
                random.Random(i),
            )
            for i in range(clients)
        ]
        cpu_before = {name: group_cpu_seconds(pgid) for name, pgid in service.groups.items()}
        bench_cpu_before = time.process_time()
        started = time.monotonic()
        until = started + duration

        async def drive(user: User) -> None:
            while time.monotonic() < until:
                await user.step()

        async def sample() -> None:
            while time.monotonic() < until:
                samples.append((time.monotonic() - started, rss_mb(pid), open_fds(pid)))
                await asyncio.sleep(2)

        say(f"soak: {clients} users + 1 TMS for {duration:.0f}s against {service.url}")
        results = await asyncio.gather(tms_actor(tms, until), sample(), *(drive(user) for user in users))
        elapsed = time.monotonic() - started
        samples.append((elapsed, rss_mb(pid), open_fds(pid)))
        cpu = {name: group_cpu_seconds(pgid) - cpu_before[name] for name, pgid in service.groups.items()}
        cpu["bench"] = time.process_time() - bench_cpu_before
        scraper = {"Authorization": f"Bearer {service.token(Role.ADMIN, 'prometheus')}"}
        metrics = (await https[-1].get("/metrics", headers=scraper)).text
    phases = {m[1]: int(float(m[2])) for m in re.finditer(r'ewms_wms_taskforces\{phase="([^"]+)"\} (\S+)', metrics)}
    await asyncio.sleep(2)  # the clients' connections are closed now
    fds_after_clients = open_fds(pid)
    stops = await unsubmitted_stops(service)
    after_warmup = next(s for s in samples if s[0] >= warmup)
    end = samples[-1]
    rss_growth = (end[1] - after_warmup[1]) / after_warmup[1]
    summary = tally.summary()
    figures = {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": summary["calls"],
        "requests_per_s": round(summary["calls"] / elapsed, 1),
        "errors": summary["errors"],
        "error_samples": summary["error_samples"],
        "tms_actions": results[0],
        "taskforces_by_phase_at_end": phases,
        **stops,
        "cpu_share": {name: round(seconds / elapsed, 2) for name, seconds in cpu.items()},
        "rss_mb_after_warmup": round(after_warmup[1], 1),
        "rss_mb_end": round(end[1], 1),
        "rss_growth": round(rss_growth, 4),
        "fds_before": fds_before,
        "fds_after_warmup": after_warmup[2],
        "fds_max": max(s[2] for s in samples),
        "fds_end": end[2],
        "fds_after_clients_closed": fds_after_clients,
        "by_operation": summary["by_operation"],
    }
    checks = {
        "no_errors": summary["errors"] == 0,
        "rss_growth_below_10_percent": rss_growth < RSS_GROWTH_LIMIT,
        # quiet (no client connection) vs. warmed up (database pool grown, one connection per client)
        "no_fd_leak": fds_after_clients <= after_warmup[2] + FD_SLACK,
        "wms_alive": service.proc.poll() is None,
        "no_stuck_taskforce": stops["stuck_taskforces_left"] == 0,
    }
    return {"figures": figures, "checks": checks}


# ---- faults and fuzzing --------------------------------------------------------------------------------------------


def run_faults(work: Path) -> dict[str, Any]:
    """``pytest`` on :data:`FAULT_TESTS`, with each scenario's figures collected."""
    figures_file = work / "fault-figures.jsonl"
    env = {**os.environ, "EWMS_RELIABILITY_FIGURES": str(figures_file)}
    cmd = [sys.executable, "-m", "pytest", *FAULT_TESTS, "-q", "-p", "no:cacheprovider"]
    cmd += ["--basetemp", str(work / "pytest")]
    say("faults: " + " ".join(cmd[2:]))
    started = time.monotonic()
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    scenarios = [json.loads(line) for line in figures_file.read_text().splitlines()] if figures_file.exists() else []
    passed = re.search(r"(\d+) passed", result.stdout)
    figures = {
        "seconds": round(time.monotonic() - started, 1),
        "tests_passed": int(passed.group(1)) if passed else 0,
        "faults_injected": sum(s.get("faults_injected", 0) for s in scenarios),
        "items_lost": sum(s.get("items_lost", 0) for s in scenarios),
        "duplicates": sum(s.get("duplicates", 0) for s in scenarios),
        "server_errors": sum(s.get("server_errors", 0) for s in scenarios),
        "leader_failovers": sum(s.get("leader_failovers", 0) for s in scenarios),
        "status_reports_refused": sum(s.get("reports_refused", 0) for s in scenarios),
        "statuses_recovered": sum(s.get("statuses_recovered", 0) for s in scenarios),
        "token_renewals": sum(s.get("token_renewals", 0) for s in scenarios),
        "failover_s_max": max((s["failover_s"] for s in scenarios if "failover_s" in s), default=None),
        "scenarios": scenarios,
    }
    if result.returncode != 0:
        figures["pytest_tail"] = result.stdout[-3000:]
    checks = {"fault_tests_pass": result.returncode == 0, "no_item_lost": figures["items_lost"] == 0}
    return {"figures": figures, "checks": checks}


def run_fuzz(service: Service, examples: int) -> dict[str, Any]:
    """Schemathesis over every operation of the document, ``examples`` per operation, with an admin token."""
    cmd = [str(Path(sys.executable).with_name("schemathesis")), "run", str(ROOT / "Docs" / "openapi.json")]
    cmd += ["--url", service.url, "-H", f"Authorization: Bearer {service.token(Role.ADMIN, 'fuzzer')}"]
    cmd += ["-n", str(examples), "--checks", FUZZ_CHECKS]
    say(f"fuzz: schemathesis with {examples} examples per operation")
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=7200, check=False)
    generated = re.search(r"(\d+) generated", result.stdout)
    tested = re.search(r"Tested: (\d+)", result.stdout)
    figures = {
        "seconds": round(time.monotonic() - started, 1),
        "examples_per_operation": examples,
        "cases_tried": int(generated.group(1)) if generated else 0,
        "operations_tested": int(tested.group(1)) if tested else 0,
        "exit_code": result.returncode,
        "summary": result.stdout[result.stdout.rfind("SUMMARY") :][-1500:],
    }
    return {"figures": figures, "checks": {"fuzz_passes": result.returncode == 0}}


# ---- command line --------------------------------------------------------------------------------------------------


def main() -> int:
    """Run the parts asked for, write the results, exit 1 on a failed check."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of mixed load (default 120)")
    parser.add_argument("--clients", type=int, default=64, help="concurrent users (default 64)")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before the RSS/fd baseline (default 20)")
    parser.add_argument("--fuzz-examples", type=int, default=0, help="also fuzz, N examples per operation")
    parser.add_argument("--no-faults", action="store_true", help="skip the fault scenarios")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.warmup >= args.duration:
        parser.error("--warmup must be shorter than --duration")

    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count()}
    work = Path(tempfile.mkdtemp(prefix="ewms-reliability-"))
    try:
        with running_service(work) as service:
            report["soak"] = asyncio.run(soak(service, args.clients, args.duration, args.warmup))
            if args.fuzz_examples:
                report["fuzz"] = run_fuzz(service, args.fuzz_examples)
            report["soak"]["checks"]["no_server_error_in_log"] = "Uncaught exception" not in service.log.read_text()
        if not args.no_faults:
            report["faults"] = run_faults(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    parts = [report[part] for part in ("soak", "faults", "fuzz") if part in report]
    checks = {name: ok for part in parts for name, ok in part["checks"].items()}
    report["met"] = all(checks.values())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    say(f"{'all checks met' if report['met'] else 'FAILED: ' + ', '.join(k for k, v in checks.items() if not v)}")
    say(f"written to {args.output}")
    return 0 if report["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
