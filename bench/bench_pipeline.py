"""Benchmark pipeline: events through a running two-task chain (``in -> cp -> mid -> cp -> out``) on the full stack.

Runs the dev stack (``ewms_dev.devstack.DevStack``: nx-27017, private RabbitMQ, WMS, TMS with the ``local`` backend
starting real ``python -m pilot`` jobs), submits the chain with 4 workers per task (pilots at one task at a time
each), waits until all 8 pilots consume, then times from the first event sent to the last result read (pika in,
without publisher confirms, which on a loaded machine made the sender the bottleneck; manual acks out; every result is
checked against its event, so a lost one fails the run).
Floors, measured in the same run on the same broker:

- broker: the same events moved through the broker twice by bare pika (publish with a confirm each, then consume
  with acks, on uvloop with the pilot's socket I/O; ``bench/bench_pilot.py``'s floor, twice), what two hops cost
  without any pilot, measured in every round;
- process starts: as many ``cp IN OUT`` starts as the chain makes (two per event), from an event loop at the chain's
  concurrency (8) by the cheapest way (``os.posix_spawn``, awaited through a pidfd, on uvloop: as the pilot starts its
  tasks), measured in every round (the best counts).

Beside them, the pilot benchmark at the same worker count: the same chain of 4 + 4 bare pilots started directly
(``bench/bench_pilot.py``'s environment), without WMS, MQS or TMS, timed the same way. Both floors, bare pilots and
full stack alternate (``--rounds``, a new workflow each time); the best run of each counts.
Targets: events/s >= 0.5 x the slower floor; the full stack takes no more than 20 % longer than the bare pilots.
Where the CPU went is recorded for the best run of each (milliseconds per event by kind of process: pilots with their
``cp``, broker, WMS, TMS, database, this process), so a miss on these shared cores can be told apart from slow code.

    .venv/bin/python -m bench.bench_pipeline [--events 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import uvloop

from bench.bench_pilot import Queues, declare, measure_floor, pilot_env, token
from bench.common import cpu_by_kind, dev_stack, emit, executable, log, run, start_and_wait
from ewms_client import WMSClient
from ewms_dev import broker_node
from ewms_dev.factories import task_request
from pilot.events_io import Event, decode_event, encode_event

WORKERS = 4  # per task
TASKS = 2
PILOT_ENV = {  # the pilots start before the first event and stop 10 s after the last one
    "EWMS_PILOT_MAX_CONCURRENT_TASKS": "1",
    "EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE": "600",
    "EWMS_PILOT_TIMEOUT_QUEUE_INCOMING": "10",
}
READY_TIMEOUT = 180.0  # for the pilots to consume
READ_TIMEOUT = 120.0  # without a result
# SESSIONS: with the kernel's autogroup scheduling (sched_autogroup_enabled), CPU is shared fairly between sessions,
# so on a machine busy with other work, processes in one session together get what one new session gets alone.
# The local backend starts each pilot, and the pilot each task, in a new session; the floors and bare pilots do too.
BARE = "events/s against bare pilots (same chain)"
# where the CPU goes while events move: processes by a piece of their command line (pilots with their tasks)
KINDS = {"pilots with their cp": " -m pilot", "broker": "beam.smp", "wms": " -m wms", "tms": " -m tms",
         "database": "nx-27017"}  # fmt: skip
CLIENT = "this process (sender, reader)"


@dataclass(frozen=True)
class Endpoint:
    """A queue as a user reaches it: broker address (``host:port[/vhost]``), queue name and a per-queue token."""

    address: str
    queue: str
    token: str

    def channel(self) -> Any:
        """A new connection's channel, the token as the password."""
        where, _, vhost = self.address.partition("/")
        host, _, port = where.partition(":")
        credentials = pika.PlainCredentials("bench", self.token)
        return pika.BlockingConnection(pika.ConnectionParameters(host, int(port), vhost or "/", credentials)).channel()


def own_cpu() -> float:
    """CPU seconds of this process, its reaped children included."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass(frozen=True)
class Timed:
    """Seconds from the first send to the last result read, and the CPU milliseconds per event each kind of process
    (:data:`KINDS`, :data:`CLIENT`) used meanwhile."""

    seconds: float
    cpu_ms: dict[str, float]


def move(source: Endpoint, sink: Endpoint, events: list[Event]) -> Timed:
    """Send the events into ``source`` (a thread) while reading as many results from ``sink``; check that every
    event came out once; time it."""
    sender, reader = source.channel(), sink.channel()  # no publisher confirms: a lost event fails the result check
    reader.basic_qos(prefetch_count=100)
    failures: list[BaseException] = []

    def send() -> None:
        try:
            for event in events:
                sender.basic_publish("", source.queue, encode_event(event))
        except BaseException as exc:  # re-raised by the reader below
            failures.append(exc)

    results: list[Any] = []
    thread = threading.Thread(target=send, name="sender")
    cpu_before, own_before = cpu_by_kind(KINDS), own_cpu()
    started = time.perf_counter()
    thread.start()
    for method, _props, body in reader.consume(sink.queue, inactivity_timeout=READ_TIMEOUT):
        if failures:
            raise RuntimeError(f"the sender failed after {len(results)} results") from failures[0]
        if method is None:
            raise TimeoutError(f"{len(results)}/{len(events)} results, then none for {READ_TIMEOUT}s")
        results.append(decode_event(body).data)
        reader.basic_ack(method.delivery_tag)
        if len(results) == len(events):
            break
    elapsed = time.perf_counter() - started
    thread.join()
    cpu = {kind: used - cpu_before[kind] for kind, used in cpu_by_kind(KINDS).items()}
    cpu[CLIENT] = own_cpu() - own_before
    reader.cancel()
    for channel in (sender, reader):
        channel.connection.close()
    if sorted(results) != sorted(e.data for e in events):
        raise RuntimeError(f"the results differ from the events ({len(set(results))} distinct of {len(events)})")
    return Timed(elapsed, {kind: round(s * 1000 / len(events), 2) for kind, s in cpu.items() if s > 0})


def wait_for_consumers(admin: Any, queues: list[str], pilots: list[subprocess.Popen[bytes]] | None = None) -> None:
    """Until each queue has :data:`WORKERS` consumers (the pilots are running)."""
    deadline = time.monotonic() + READY_TIMEOUT
    wanted = [WORKERS] * len(queues)
    while (counts := [admin.queue_declare(q, passive=True).method.consumer_count for q in queues]) != wanted:
        if time.monotonic() > deadline:
            raise TimeoutError(f"consumers on {queues}: {counts}, after {READY_TIMEOUT}s")
        if pilots and any(p.poll() is not None for p in pilots):
            raise RuntimeError("a bare pilot exited before the first event")
        time.sleep(0.1)


async def process_starts(work: Path, count: int, concurrency: int) -> Timed:
    """Start and wait for ``count`` ``cp IN OUT`` processes (:func:`start_and_wait`) from ``concurrency``
    workers on the event loop; the CPU per event (two starts) is this process's and its children's."""
    src = work / "spawn.in"
    src.write_text("event")
    cp = executable("cp")

    async def worker(index: int) -> None:
        argv = [cp, str(src), str(work / f"spawn-{index}.out")]
        for _ in range(count // concurrency + (index < count % concurrency)):
            if (code := await start_and_wait(argv)) != 0:  # in its own session, as the pilot starts tasks (SESSIONS)
                raise RuntimeError(f"cp exited with {code}")

    own_before, started = own_cpu(), time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    seconds = time.perf_counter() - started
    return Timed(seconds, {"this process with its cp": round((own_cpu() - own_before) * 2000 / count, 2)})


def bare_pilots(node: broker_node.BrokerNode, events: list[Event], work: Path, name: str) -> Timed:
    """The chain of :data:`WORKERS` + :data:`WORKERS` pilots started directly, on fresh queues ``name-*``; timed
    by :func:`move`."""
    admin = pika.BlockingConnection(pika.URLParameters(node.admin_url)).channel()
    names = [declare(admin, f"{name}-{hop}") for hop in ("in", "mid", "out")]
    key = node.signing_key
    pilots: list[subprocess.Popen[bytes]] = []
    try:
        for hop in range(TASKS):
            for worker in range(WORKERS):
                index = hop * WORKERS + worker
                queues = Queues("/", names[hop], names[hop + 1], None)  # bare: no failed-events queue, no reports
                env = {**pilot_env(node, key, queues, work, index, 1), **PILOT_ENV}
                with (work / f"{name}-pilot-{index}.log").open("wb") as err:
                    cmd = [sys.executable, "-m", "pilot"]
                    pilots.append(  # each in its own session, as the local backend starts them (SESSIONS)
                        subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
                    )
        wait_for_consumers(admin, names[:TASKS], pilots)
        return move(
            Endpoint(node.address, names[0], token(key, "/", names[0])),
            Endpoint(node.address, names[-1], token(key, "/", names[-1])),
            events,
        )
    finally:
        for pilot in pilots:
            pilot.terminate()
        for pilot in pilots:
            pilot.wait(timeout=60)
        admin.connection.close()


def chain_request() -> dict[str, Any]:
    """The two-task chain at ``local``, :data:`WORKERS` pilots per task, running ``cp`` on the host."""
    tasks = [
        task_request(["local"], ["in"], ["mid"], n_workers=WORKERS),
        task_request(["local"], ["mid"], ["out"], n_workers=WORKERS),
    ]
    for task in tasks:
        task.update(task_image="", task_env={}, pilot_config={"environment": PILOT_ENV})
    return {"public_queue_aliases": ["in", "out"], "tasks": tasks}


async def full_stack(state: Any, node: broker_node.BrokerNode, events: list[Event]) -> Timed:
    """The chain as a user runs it: submitted to the WMS, pilots started by the TMS; timed by :func:`move`."""
    async with WMSClient(state.url, state.user_token) as client:
        created = await client.submit_workflow(chain_request())
        workflow_id = created["workflow"]["workflow_id"]
        profiles = {p["alias"]: p for p in await client.wait_for_public_queues(workflow_id, timeout=READY_TIMEOUT)}
        directives = [d async for d in client.query("task-directives", {"workflow_id": workflow_id})]
        inputs = [q for d in directives for q in d["input_queues"]]
        vhost = profiles["in"]["broker_address"].partition("/")[2]  # the workflow's own vhost
        admin = pika.BlockingConnection(pika.URLParameters(node.admin_url_in(vhost))).channel()
        try:
            await asyncio.to_thread(wait_for_consumers, admin, inputs)
        finally:
            admin.connection.close()
        log(f"workflow {workflow_id}: {TASKS * WORKERS} pilots consuming")
        ends = [Endpoint(profiles[a]["broker_address"], profiles[a]["mqid"], profiles[a]["auth_token"]) for a in
                ("in", "out")]  # fmt: skip
        timed = await asyncio.to_thread(move, ends[0], ends[1], events)
        await client.finish(workflow_id)
    return timed


def broker_seconds(n: int, hops: list[dict[str, float]]) -> float:
    """Seconds the broker floor takes for ``n`` events over the chain's hops (each measured on its own)."""
    return sum(n / hop["events_per_s"] for hop in hops)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="floors, bare pilots and full stack alternate this many times"
    )
    args = parser.parse_args()
    n = args.events
    events = [Event(f"event {i:06d} " + "x" * 64) for i in range(n)]
    bodies = [encode_event(e) for e in events]
    load = {"before": [round(x, 2) for x in os.getloadavg()]}

    with dev_stack(max_local_jobs=TASKS * WORKERS) as state:
        node = broker_node.BrokerNode(**state.broker)
        work = Path(state.data_dir)
        timed: dict[str, list[Timed]] = {"process": [], "bare": [], "stack": []}
        hops: list[list[dict[str, float]]] = []  # per round, one measurement per hop
        for round_ in range(args.rounds):  # alternating, so that a slow spell of the machine hits all alike
            hops.append([await asyncio.to_thread(measure_floor, node, bodies) for _ in range(TASKS)])
            timed["process"].append(await process_starts(work, TASKS * n, TASKS * WORKERS))
            timed["bare"].append(await asyncio.to_thread(bare_pilots, node, events, work, f"pipeline-{round_}"))
            timed["stack"].append(await full_stack(state, node, events))
            names = ("process floor", "bare pilots", "full stack")
            round_rates = {"broker floor": n / broker_seconds(n, hops[-1])}
            round_rates.update({name: n / v[-1].seconds for name, v in zip(names, timed.values(), strict=True)})
            log(f"round {round_ + 1}: " + ", ".join(f"{k} {rate:.1f}" for k, rate in round_rates.items()) + " events/s")
    load["after"] = [round(x, 2) for x in os.getloadavg()]
    runs = {k: [round(t.seconds, 3) for t in v] for k, v in timed.items()}
    best = {k: min(v, key=lambda t: t.seconds) for k, v in timed.items()}
    spawn_s, bare_s, stack_s = (best[k].seconds for k in ("process", "bare", "stack"))
    broker_s = min(broker_seconds(n, round_hops) for round_hops in hops)
    cpu_ms = {k: {**t.cpu_ms, "total": round(sum(t.cpu_ms.values()), 2)} for k, t in best.items()}

    rates = {"broker": n / broker_s, "process": n / spawn_s, "bare": n / bare_s, "stack": n / stack_s}
    slower = min(("broker", "process"), key=rates.__getitem__)
    over_bare = stack_s / bare_s - 1
    figures = {
        "events/s": round(rates["stack"], 1),
        BARE: round(rates["stack"], 1),
        "time over bare pilots %": round(over_bare * 100, 1),
        "seconds, first send to last result": round(stack_s, 2),
        "floor: broker twice, events/s": round(rates["broker"], 1),
        "floor: process starts x2 at c8, events/s": round(rates["process"], 1),
    }
    floor = {"events/s": round(rates[slower], 1), BARE: round(rates["bare"], 1)}
    ratio = {k: round(figures[k] / v, 3) for k, v in floor.items()}
    emit(
        "pipeline",
        figures,
        floor,
        "events/s >= 0.5 x the slower floor; full stack <= 20 % over bare pilots (time)",
        ratio["events/s"] >= 0.5 and over_bare <= 0.2,
        f"{n} events through in -> cp -> mid -> cp -> out, {WORKERS} pilots per task (1 task each); slower floor: "
        f"{slower}; best of {args.rounds} alternating run(s) each; load average {load['before']} before, "
        f"{load['after']} after (2 cores shared). CPU ms per event in the best runs: process floor "
        f"{cpu_ms['process']['total']}, bare pilots {cpu_ms['bare']['total']}, full stack {cpu_ms['stack']['total']} "
        f"(by process in details.cpu_ms_per_event).",
        ratio=ratio,
        details={"broker_hops": hops, "load_average": load, "runs_s": runs, "cpu_ms_per_event": cpu_ms},
    )


if __name__ == "__main__":
    run(main, uvloop.new_event_loop)  # the pilot's event loop, for the process floor
