"""Run the benchmarks, collect their results into ``bench/results/latest.json`` and print a table.

Every benchmark runs in its own process and prints one JSON object on stdout; its stderr goes to
``bench/results/<id>.log``. The watcher and pilot benchmarks belong to their own scripts, whose output is adapted here
to the common shape ``{"id", "figures", "floor", "ratio", "target", "met", "notes"}``.

    bench/run                      # everything
    bench/run rest-get launch      # some
    bench/run --quick              # small sizes: a smoke test of the harness, not a measurement
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PACKAGES = ("ewms-wm", "tornado", "pymongo", "nx-27017", "httpx", "htcondor", "pika", "oms-mqclient", "PyJWT",
            "jsonschema", "orjson", "uvloop")  # fmt: skip
Adapter = Callable[[dict[str, Any]], dict[str, Any]]
QUIET_IDLE = 0.9  # share of CPU time idle over a second that counts as a quiet machine
QUIET_WAIT_MAX = 60.0  # seconds a benchmark waits for one at most


def adapt_watcher(raw: dict[str, Any]) -> dict[str, Any]:
    """``bench/bench_watcher.py``'s output in the common shape (its ratio may be by CPU time or by wall clock)."""
    watcher, floor, targets = raw["watcher"], raw["floor_bare_htcondor2"], raw["targets"]
    figures = {"events/s": watcher["events_per_s"]}
    floors = {"events/s": floor["events_per_s"]}
    ratio = {"events/s": raw.get("ratio_by_wall_clock", round(watcher["events_per_s"] / floor["events_per_s"], 3))}
    if "events_per_cpu_s" in watcher:
        figures["events per CPU s"] = watcher["events_per_cpu_s"]
        floors["events per CPU s"] = floor["events_per_cpu_s"]
        ratio["events per CPU s"] = raw["ratio_watcher_to_floor"]
    else:
        ratio["events/s"] = raw["ratio_watcher_to_floor"]
    figures["peak RSS MB"], floors["peak RSS MB"] = watcher["peak_rss_mb"], floor["peak_rss_mb"]
    notes = "floor: bare htcondor2.JobEventLog iteration of the same {events} events (best of {repeat})".format(
        **raw["log"]
    )
    return {
        "figures": figures,
        "floor": floors,
        "ratio": ratio,
        "target": f"ratio >= {targets['ratio_min']}; peak RSS < {targets['peak_rss_mb_max']} MB",
        "met": raw["meets_targets"],
        "notes": notes + (f"; {raw['note']}" if raw.get("note") else ""),
    }


PILOT_MIN_EVENTS_PER_S = 200  # the targets bench/bench_pilot.py documents (4 pilots on 2 cores)
PILOT_MAX_OVERHEAD_MS = 10
PILOT_MIN_ACCOUNTED_RATIO = 0.9  # counters and dead-lettering cost at most 10 % of events/s


def adapt_pilot(raw: dict[str, Any]) -> dict[str, Any]:
    """``bench/bench_pilot.py``'s output in the common shape (it states its targets in its docstring only)."""
    figures: dict[str, Any] = {}
    floor: dict[str, Any] = {}
    ratio: dict[str, Any] = {}
    for run in raw["runs"]:
        name = f"{run['pilots']} pilot{'s' if run['pilots'] > 1 else ''} events/s"
        figures[name], ratio[name] = run["events_per_s"], run["ratio_to_floor"]
        floor[name] = raw["floor"]["events_per_s"]
    figures["ms/event beyond process start"] = raw["overhead_ms_beyond_process_start"]
    figures["process start ms"] = raw["process_start_ms"]
    accounting = raw["accounting"]
    figures["4 pilots bare events/s (best)"] = accounting["best"]["bare"]
    figures["4 pilots accounted events/s (best)"] = accounting["best"]["accounted"]
    ratio["accounted / bare"] = accounting["ratio"]
    four = next((r["events_per_s"] for r in raw["runs"] if r["pilots"] == 4), None)
    overhead = raw["overhead_ms_beyond_process_start"]
    return {
        "figures": figures,
        "floor": floor,
        "ratio": ratio,
        "target": f">= {PILOT_MIN_EVENTS_PER_S} events/s with 4 pilots; < {PILOT_MAX_OVERHEAD_MS} ms/event beyond "
        f"process start; accounted / bare >= {PILOT_MIN_ACCOUNTED_RATIO} (as documented in bench_pilot.py)",
        "met": four is not None and four >= PILOT_MIN_EVENTS_PER_S and overhead is not None
        and overhead < PILOT_MAX_OVERHEAD_MS and accounting["ratio"] >= PILOT_MIN_ACCOUNTED_RATIO,
        "notes": f"{raw['events']} events; floor: pika publish with confirms + consume with acks on the same broker; "
        "accounted = the MQS's policies (delivery limit, dead-lettering), a failed-events queue and counter reports; "
        f"bare = none of them; 4 pilots each, alternating, best of {len(accounting['runs']['bare'])}",
    }  # fmt: skip


@dataclass(frozen=True)
class Bench:
    """How to run one benchmark."""

    id: str
    argv: tuple[str, ...]  # after the Python executable
    quick: tuple[str, ...] = ()  # extra arguments for --quick
    adapter: Adapter | None = None
    timeout: float = 600.0


BENCHES = (
    Bench("rest-get", ("-m", "bench.bench_rest_get"), ("--taskforces", "2000", "--seconds", "1")),
    Bench("rest-query", ("-m", "bench.bench_rest_query"), ("--taskforces", "5000", "--seconds", "1")),
    Bench("query-first-page", ("-m", "bench.bench_query_first_page"), ("--taskforces", "5000", "--seconds", "1")),
    Bench("rest-submit", ("-m", "bench.bench_rest_submit"), ("--seconds", "2")),
    Bench("launch", ("-m", "bench.bench_launch"), ("--taskforces", "10",)),
    Bench("watcher", ("bench/bench_watcher.py",), ("--events", "50000", "--jobs", "1000", "--repeat", "1"),
          adapt_watcher),
    Bench("freshness", ("-m", "bench.bench_freshness"), ("--samples", "4")),
    # 5,000 events rather than its default 10,000 keep the suite under 15 minutes on 2 cores; rates hardly change
    Bench("pilot", ("-m", "bench.bench_pilot", "--events", "5000"), ("--events", "300"), adapt_pilot),
    Bench("memory", ("-m", "bench.bench_memory"), ("--taskforces", "5000", "--requests", "500")),
    Bench("pipeline", ("-m", "bench.bench_pipeline"), ("--events", "200", "--rounds", "1"), timeout=900.0),
    Bench("scale", ("-m", "bench.bench_scale"), ("--workflows", "50", "--samples", "5", "--launch", "100", "--stream",
          "50"), timeout=1800.0),
)  # fmt: skip


def machine() -> dict[str, Any]:
    """Where the figures come from."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    rabbitmq = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"], capture_output=True, text=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT)
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024**2, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {**versions, "rabbitmq-server": rabbitmq.stdout.strip() or None},
        "git": (commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")) or None,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def cpu_times() -> tuple[int, int]:
    """(idle, total) CPU ticks of the machine so far (``/proc/stat``)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)


def wait_for_quiet() -> float:
    """Wait until the CPUs were at least :data:`QUIET_IDLE` idle over a second (what the previous benchmark started
    may still be winding down), at most :data:`QUIET_WAIT_MAX` seconds; how long it waited."""
    started = time.monotonic()
    while time.monotonic() - started < QUIET_WAIT_MAX:
        idle0, total0 = cpu_times()
        time.sleep(1.0)
        idle1, total1 = cpu_times()
        if (idle1 - idle0) >= QUIET_IDLE * max(total1 - total0, 1):
            break
    return round(time.monotonic() - started, 1)


def parse_output(stdout: str) -> dict[str, Any]:
    """The JSON object a benchmark printed (the whole stdout, or else its last line)."""
    try:
        return dict(json.loads(stdout))
    except json.JSONDecodeError:
        return dict(json.loads(stdout.strip().splitlines()[-1]))


def run_one(bench: Bench, quick: bool) -> dict[str, Any]:
    """Run a benchmark in its own process; its result in the common shape, with status and timing."""
    base: dict[str, Any] = {
        "id": bench.id,
        "figures": {},
        "floor": {},
        "ratio": {},
        "target": "",
        "met": None,
        "notes": "",
    }
    argv = [sys.executable, *bench.argv, *(bench.quick if quick else ())]
    log_path = RESULTS / f"{bench.id}.log"
    waited = 0.0 if quick else wait_for_quiet()
    load = [round(x, 2) for x in os.getloadavg()]
    started = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            stdout, _ = proc.communicate(timeout=bench.timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()  # the benchmarks stop their servers on SIGTERM
            try:
                proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            return {**base, "status": "failed", "notes": f"timed out after {bench.timeout:.0f}s; see {log_path}"}
    elapsed = round(time.monotonic() - started, 1)
    timing = {"seconds": elapsed, "load_average_before": load, "waited_for_quiet_s": waited}
    if proc.returncode != 0:
        tail = " | ".join(log_path.read_text().strip().splitlines()[-3:])
        return {**base, **timing, "status": "failed", "notes": f"exit {proc.returncode}: {tail} (see {log_path})"}
    try:
        raw = parse_output(stdout)
        result = {**base, **raw} if "figures" in raw else {**base, **bench.adapter(raw), "raw": raw}  # type: ignore[misc]
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        return {**base, **timing, "status": "failed", "notes": f"output not understood ({exc!r})",
                "raw_stdout": stdout[-4000:]}  # fmt: skip
    return {**result, **timing, "status": "ok"}


def fmt(value: Any) -> str:
    """A figure for the table."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: every figure with its floor and ratio, then each benchmark's target and whether it was met."""
    lines = ["| benchmark | figure | value | floor | ratio |", "|---|---|---|---|---|"]
    for res in results:
        name = res["id"]
        if res["status"] != "ok":
            lines.append(f"| {name} | {res['status'].upper()} | | | |")
            continue
        for key, value in res["figures"].items():
            lines.append(f"| {name} | {key} | {fmt(value)} | {fmt(res['floor'].get(key))} | "
                         f"{fmt(res['ratio'].get(key))} |")  # fmt: skip
            name = ""
        verdict = "**met**" if res["met"] else "**MISSED**"
        lines.append(f"| | target: {res['target']} | {verdict} | | |")
    notes = [f"- {r['id']} ({r.get('seconds', '-')} s, load before {r.get('load_average_before', '-')} after "
             f"{r.get('waited_for_quiet_s', '-')} s waiting for idle CPUs): {r['notes']}"
             for r in results if r["notes"]]  # fmt: skip
    return "\n".join([*lines, "", *notes])


def main() -> int:
    known = [b.id for b in BENCHES]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ids", nargs="*", metavar="ID", help=f"benchmarks to run (default all): {', '.join(known)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the harness, not the figures")
    args = parser.parse_args()
    unknown = [i for i in args.ids if i not in known]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    chosen = [b for b in BENCHES if not args.ids or b.id in args.ids]
    RESULTS.mkdir(parents=True, exist_ok=True)

    started = datetime.datetime.now(datetime.UTC)
    info = machine()
    if info["load_average_at_start"][0] > (info["cores"] or 1):
        print(f"warning: load average {info['load_average_at_start']} exceeds {info['cores']} cores: "
              "other work on this machine will skew the figures", file=sys.stderr)  # fmt: skip
    results = []
    for bench in chosen:
        print(f"running {bench.id} ...", file=sys.stderr, flush=True)
        result = run_one(bench, args.quick)
        verdict = {True: "met", False: "MISSED", None: "-"}[result["met"]]
        print(f"  {result['status']} in {result.get('seconds', '-')} s, target {verdict}", file=sys.stderr, flush=True)
        results.append(result)
    finished = datetime.datetime.now(datetime.UTC)
    text = table(results)
    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": finished.isoformat(timespec="seconds"),
        "total_seconds": round((finished - started).total_seconds(), 1),
        "quick": args.quick,
        "machine": info,
        "results": results,
        "table": text,
    }
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "latest.md").write_text(text + "\n")
    print(text)
    print(f"\n{len(results)} benchmark(s) in {report['total_seconds']} s; results in {RESULTS / 'latest.json'}")
    return 0 if all(r["status"] == "ok" for r in results) else 1  # a missing or crashed benchmark fails the run


if __name__ == "__main__":
    sys.exit(main())
