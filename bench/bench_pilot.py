"""Benchmark: pilot throughput on trivial events (``cp {{INFILE}} {{OUTFILE}}``) against the raw broker floor.

Starts its own private RabbitMQ node (per-queue JWTs, as in production), then measures in the same run:

- floor: pika publishing the same event envelopes with a confirm each, then consuming them with manual acks
  (prefetch 4), on uvloop with the pilot's own socket I/O (``pilot.broker_io``, the cheapest pika path measured
  here): what moving one event through the broker costs without any pilot;
- process start: starting ``cp IN OUT`` one after another by the cheapest way (``os.posix_spawn``, awaited through a
  pidfd on uvloop, as the pilot starts its tasks): the per-event cost a process-per-event pilot cannot avoid;
- pilots: the events through 1 and through 4 ``python -m pilot`` processes (concurrency 1 each by default), timed
  from their launch until the output queue holds every event, with every event accounted for as in production: the
  queues in their own vhost under the MQS's policies (delivery limit, dead-lettering to the failed-events queue,
  length limits), the pilots given the failed-events queue and reporting their counters as the TMS sets them;
- accounting cost: 4 pilots with that accounting and 4 "bare" pilots (plain queues, no failed-events queue, no
  reports), alternating, best of three each.

Prints JSON: events/s of each, each pilot run's ratio to the floor, one pilot's per-event time beyond process start
and the accounted / bare ratio (targets: >= 200 events/s with 4 pilots on 2 cores; < 10 ms per event beyond process
start; accounting costs at most 10 % of events/s, ratio >= 0.9).

    .venv/bin/python -m bench.bench_pilot                 # 10,000 events
    .venv/bin/python -m bench.bench_pilot --events 2000
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pika
import pika.spec
import uvloop
from pika.adapters.asyncio_connection import AsyncioConnection

from bench.common import executable, start_and_wait
from ewms_dev import broker_node
from mqs_client.broker_admin import BrokerAdmin, workflow_policies
from mqs_client.config import MQSConfig
from mqs_client.tokens import queue_scopes
from pilot.broker_io import LoopIOServices
from pilot.events_io import Event, encode_event
from tms.submit_description import COUNTER_REPORT_INTERVAL

QUEUE_ARGS = {"x-queue-type": "quorum"}
SPAWN_SAMPLES = 500
ROUNDS = 3  # bare and accounted 4-pilot runs alternate; the best of this many counts for each
MQS_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(MQSConfig)}


@dataclass(frozen=True)
class Queues:
    """Where one pilot run reads and writes: the default vhost (bare) or a workflow-like vhost (accounted)."""

    vhost: str
    incoming: str
    outgoing: str
    failed: str | None  # the failed-events queue (accounted runs only)


def token(key: str, vhost: str, queue: str) -> str:
    """A per-queue broker token, as the MQS mints them."""
    claims = {
        "sub": "bench-pilot",
        "aud": "rabbitmq",
        "exp": int(time.time()) + 3600,
        "scope": queue_scopes("rabbitmq", vhost, queue),
    }
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": "ewms"})


def admin_channel(node: broker_node.BrokerNode, vhost: str = "/") -> Any:
    return pika.BlockingConnection(pika.URLParameters(node.admin_url_in(vhost))).channel()


def declare(channel: Any, name: str) -> str:
    channel.queue_declare(name, durable=True, arguments=QUEUE_ARGS)
    return name


def bare_queues(node: broker_node.BrokerNode, run: str) -> Queues:
    """Plain quorum queues on the default vhost: no policies, no failed-events queue."""
    channel = admin_channel(node)
    queues = Queues("/", declare(channel, f"bench-in-{run}"), declare(channel, f"bench-out-{run}"), None)
    channel.connection.close()
    return queues


def accounted_queues(node: broker_node.BrokerNode, run: str) -> Queues:
    """A vhost provisioned as the MQS provisions a workflow's: its policies (with the MQS's default limits) and the
    work and failed-events queues, through the same management API calls."""
    queues = Queues(f"bench-{run}", f"bench-in-{run}", f"bench-out-{run}", f"bench-failed-{run}")
    assert queues.failed is not None
    policies = workflow_policies(
        queues.failed,
        MQS_DEFAULTS["mq_max_length"],
        MQS_DEFAULTS["mq_max_length_bytes"],
        MQS_DEFAULTS["mq_delivery_limit"],
    )

    async def provision() -> None:
        admin = BrokerAdmin(node.management_url)
        try:
            await admin.create_vhost(queues.vhost, policies, max_queues=3)
            await admin.declare_queues(queues.vhost, [queues.incoming, queues.outgoing, queues.failed or ""])
        finally:
            await admin.close()

    asyncio.run(provision())
    return queues


def publish(channel: Any, queue: str, bodies: list[bytes]) -> None:
    """Load ``queue`` with ``bodies`` before a pilot run (untimed), a confirm per message."""
    channel.confirm_delivery()
    for body in bodies:
        channel.basic_publish("", queue, body)


async def floor_hop(url: str, queue: str, bodies: list[bytes]) -> tuple[float, float]:
    """Seconds to publish ``bodies`` to ``queue`` with a confirm each, then to consume them with manual acks
    (prefetch 4): pika on uvloop with the pilot's own socket I/O (:class:`pilot.broker_io.LoopIOServices`),
    measured here as the cheapest pika path (BlockingConnection was about 12 % slower per hop). A nack or a
    closed connection fails the run."""
    loop = asyncio.get_running_loop()
    pending: dict[int, asyncio.Future[Any]] = {}  # confirm per delivery tag; the consumer's end under 0
    opened: asyncio.Future[Any] = loop.create_future()

    def lost(_conn: Any, reason: object) -> None:
        for fut in [opened, *pending.values()]:
            if not fut.done():
                fut.set_exception(RuntimeError(f"floor connection closed: {reason}"))

    conn = AsyncioConnection(
        pika.URLParameters(url),
        on_open_callback=opened.set_result,
        on_open_error_callback=lost,
        on_close_callback=lost,
        custom_ioloop=LoopIOServices(loop),
    )
    await opened

    async def call(start: Callable[[Callable[[Any], None]], object]) -> Any:
        done: asyncio.Future[Any] = loop.create_future()
        start(done.set_result)
        return await done

    def confirmed(frame: Any) -> None:
        for tag in [t for t in pending if 0 < t <= frame.method.delivery_tag]:
            pending.pop(tag).set_result(frame.method)

    channel = await call(lambda cb: conn.channel(on_open_callback=cb))
    await call(lambda cb: channel.confirm_delivery(confirmed, callback=cb))
    started = time.perf_counter()
    for tag, body in enumerate(bodies, start=1):
        pending[tag] = loop.create_future()
        channel.basic_publish("", queue, body)
        if not isinstance(await pending[tag], pika.spec.Basic.Ack):
            raise RuntimeError("the broker nacked a floor message")
    published = time.perf_counter() - started

    await call(lambda cb: channel.basic_qos(prefetch_count=4, callback=cb))
    pending[-1] = all_consumed = loop.create_future()
    count = 0

    def on_message(_channel: Any, method: Any, _props: Any, _body: bytes) -> None:
        nonlocal count
        channel.basic_ack(method.delivery_tag)
        count += 1
        if count == len(bodies):
            all_consumed.set_result(None)

    started = time.perf_counter()
    channel.basic_consume(queue, on_message)
    await all_consumed
    consumed = time.perf_counter() - started
    closed: asyncio.Future[Any] = loop.create_future()
    conn.add_on_close_callback(lambda *_: closed.set_result(None))
    conn.close()
    await closed
    return published, consumed


def measure_floor(node: broker_node.BrokerNode, bodies: list[bytes]) -> dict[str, float]:
    channel = admin_channel(node)
    queue = declare(channel, "bench-floor")
    channel.connection.close()
    t_pub, t_con = uvloop.run(floor_hop(node.admin_url_in("/"), queue, bodies))
    return {
        "publish_per_s": round(len(bodies) / t_pub, 1),
        "consume_per_s": round(len(bodies) / t_con, 1),
        "events_per_s": round(len(bodies) / (t_pub + t_con), 1),
    }


def measure_process_start(work: Path) -> float:
    """Milliseconds to start and wait for ``cp IN OUT``, one after another (the cheapest way,
    :func:`bench.common.start_and_wait`)."""
    src, dst = work / "spawn.in", work / "spawn.out"
    src.write_text("event")
    argv = [executable("cp"), str(src), str(dst)]

    async def spawn_all() -> float:
        started = time.perf_counter()
        for _ in range(SPAWN_SAMPLES):
            # own session, as the local backend starts pilots and pilots start tasks (autogroup scheduling)
            await start_and_wait(argv)
        return time.perf_counter() - started

    return uvloop.run(spawn_all()) / SPAWN_SAMPLES * 1000  # on the pilot's event loop


def pilot_env(
    node: broker_node.BrokerNode, key: str, queues: Queues, work: Path, index: int, concurrency: int
) -> dict[str, str]:
    """The pilot's environment; an accounted run adds the failed-events queue and counter reports as the TMS sets
    them (to a job event log, the local backend's channel)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EWMS_", "_EWMS_"))}
    address = node.address if queues.vhost == "/" else f"{node.address}/{queues.vhost}"
    for role, queue in (("INCOMING", queues.incoming), ("OUTGOING", queues.outgoing), ("FAILED", queues.failed)):
        if queue is not None:
            env[f"EWMS_PILOT_QUEUE_{role}"] = queue
            env[f"EWMS_PILOT_QUEUE_{role}_AUTH_TOKEN"] = token(key, queues.vhost, queue)
            env[f"EWMS_PILOT_QUEUE_{role}_BROKER_TYPE"] = "rabbitmq"
            env[f"EWMS_PILOT_QUEUE_{role}_BROKER_ADDRESS"] = address
    env.update(
        EWMS_PILOT_TASK_ARGS="cp {{INFILE}} {{OUTFILE}}",
        EWMS_PILOT_TIMEOUT_QUEUE_INCOMING="1",
        EWMS_PILOT_MAX_CONCURRENT_TASKS=str(concurrency),
        EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST=str(work / f"pilot-{index}"),
    )
    if queues.failed is not None:
        env.update(
            EWMS_PILOT_HTCHIRP="True",
            EWMS_PILOT_HTCHIRP_DEST="JOB_EVENT_LOG",
            EWMS_PILOT_HTCHIRP_RATELIMIT_INTERVAL=COUNTER_REPORT_INTERVAL,
            _EWMS_PILOT_JOB_EVENT_LOG=str(work / "pilots.jel"),
            _EWMS_PILOT_CLUSTER_ID="1",
            _EWMS_PILOT_PROC_ID=str(index),
        )
    return env


def measure_pilots(
    node: broker_node.BrokerNode,
    key: str,
    bodies: list[bytes],
    n_pilots: int,
    concurrency: int,
    work: Path,
    accounted: bool = True,
    run: str = "",
) -> dict[str, Any]:
    """Publish ``bodies``, start the pilots, and time them until the output queue holds every event."""
    run = run or f"{n_pilots}"
    queues = accounted_queues(node, run) if accounted else bare_queues(node, run)
    channel = admin_channel(node, queues.vhost)
    publish(channel, queues.incoming, bodies)
    logs = [(work / f"pilot-{run}-{i}.log").open("w") for i in range(n_pilots)]
    started = time.perf_counter()
    pilots = [
        subprocess.Popen(
            [sys.executable, "-m", "pilot"],
            env=pilot_env(node, key, queues, work, i, concurrency),
            stdout=subprocess.DEVNULL,
            stderr=logs[i],
            start_new_session=True,  # as the local backend starts them: each pilot its own scheduling group
        )
        for i in range(n_pilots)
    ]
    while channel.queue_declare(queues.outgoing, passive=True).method.message_count < len(bodies):
        if all(p.poll() is not None for p in pilots):
            raise RuntimeError(f"pilots exited early; see {work}/pilot-{run}-*.log")
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    codes = [p.wait(timeout=60) for p in pilots]
    outputs = channel.queue_declare(queues.outgoing, passive=True).method.message_count
    failed = channel.queue_declare(queues.failed, passive=True).method.message_count if queues.failed else 0
    channel.connection.close()
    for log in logs:
        log.close()
    return {
        "pilots": n_pilots,
        "concurrency_per_pilot": concurrency,
        "accounted": accounted,
        "seconds": round(elapsed, 2),
        "events_per_s": round(len(bodies) / elapsed, 1),
        "outputs": outputs,
        "failed_events": failed,
        "exit_codes": codes,
    }


def measure_accounting(
    node: broker_node.BrokerNode, key: str, bodies: list[bytes], concurrency: int, work: Path
) -> dict[str, Any]:
    """4 bare and 4 accounted pilots, alternating; the best events/s of each and their ratio."""
    runs: dict[str, list[float]] = {"bare": [], "accounted": []}
    for n in range(ROUNDS):
        for name in runs:
            result = measure_pilots(node, key, bodies, 4, concurrency, work, name == "accounted", f"{name}-{n}")
            runs[name].append(result["events_per_s"])
    best = {name: max(rates) for name, rates in runs.items()}
    return {"runs": runs, "best": best, "ratio": round(best["accounted"] / best["bare"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--pilots", default="1,4", help="comma-separated pilot counts to run")
    parser.add_argument("--concurrency", type=int, default=1, help="EWMS_PILOT_MAX_CONCURRENT_TASKS per pilot")
    args = parser.parse_args()

    bodies = [encode_event(Event(f"event {i:06d} " + "x" * 64)) for i in range(args.events)]
    key = secrets.token_urlsafe(32)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-pilot-") as tmp:
        work = Path(tmp)
        node = broker_node.start(work / "rmq", key)
        try:
            floor = measure_floor(node, bodies)
            spawn_ms = measure_process_start(work)
            runs = [measure_pilots(node, key, bodies, int(n), args.concurrency, work) for n in args.pilots.split(",")]
            accounting = measure_accounting(node, key, bodies, args.concurrency, work)
        finally:
            broker_node.stop(node)
    single = next((r for r in runs if r["pilots"] == 1 and args.concurrency == 1), None)
    result = {
        "events": args.events,
        "cores": os.cpu_count(),
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "floor": floor,
        "process_start_ms": round(spawn_ms, 2),
        "runs": [{**r, "ratio_to_floor": round(r["events_per_s"] / floor["events_per_s"], 3)} for r in runs],
        "per_event_ms_one_pilot": round(1000 / single["events_per_s"], 2) if single else None,
        "overhead_ms_beyond_process_start": round(1000 / single["events_per_s"] - spawn_ms, 2) if single else None,
        "accounting": accounting,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
