"""Benchmark: pilot throughput on trivial events (``cp {{INFILE}} {{OUTFILE}}``) against the raw broker floor.

Starts its own private RabbitMQ node (per-queue JWTs, as in production), then measures in the same run:

- floor: pika publishing the same event envelopes with a confirm each, then consuming them with manual acks
  (prefetch 4): what moving one event through the broker costs without any pilot;
- process start: spawning ``cp IN OUT`` one after another from asyncio, as the pilot does: the per-event cost a
  process-per-event pilot cannot avoid;
- pilots: the events through 1 and through 4 ``python -m pilot`` processes (concurrency 1 each by default), timed
  from their launch until the output queue holds every event.

Prints JSON: events/s of each, each pilot run's ratio to the floor, and one pilot's per-event time beyond process
start (targets: >= 200 events/s with 4 pilots on 2 cores; < 10 ms per event beyond process start).

    .venv/bin/python bench/bench_pilot.py                 # 10,000 events
    .venv/bin/python bench/bench_pilot.py --events 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt
import pika

from ewms_dev import broker_node
from pilot.events_io import Event, encode_event

QUEUE_ARGS = {"x-queue-type": "quorum"}
SPAWN_SAMPLES = 500


def token(key: str, queue: str) -> str:
    """A per-queue broker token, as the MQS mints them."""
    scope = " ".join(
        [f"rabbitmq.{verb}:%2F/{queue}" for verb in ("read", "write", "configure")] + ["rabbitmq.write:%2F/amq.default"]
    )
    claims = {"sub": "bench-pilot", "aud": "rabbitmq", "exp": int(time.time()) + 3600, "scope": scope}
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": "ewms"})


def admin_channel(node: broker_node.BrokerNode) -> Any:
    return pika.BlockingConnection(pika.URLParameters(node.admin_url)).channel()


def declare(channel: Any, name: str) -> str:
    channel.queue_declare(name, durable=True, arguments=QUEUE_ARGS)
    return name


def publish(channel: Any, queue: str, bodies: list[bytes]) -> float:
    """Publish with a confirm per message; return the seconds it took."""
    channel.confirm_delivery()
    started = time.perf_counter()
    for body in bodies:
        channel.basic_publish("", queue, body)
    return time.perf_counter() - started


def consume(channel: Any, queue: str, count: int) -> float:
    """Consume ``count`` messages with manual acks; return the seconds it took."""
    channel.basic_qos(prefetch_count=4)
    started = time.perf_counter()
    for n, (method, _props, _body) in enumerate(channel.consume(queue), start=1):
        channel.basic_ack(method.delivery_tag)
        if n == count:
            break
    channel.cancel()
    return time.perf_counter() - started


def measure_floor(node: broker_node.BrokerNode, bodies: list[bytes]) -> dict[str, float]:
    channel = admin_channel(node)
    queue = declare(channel, "bench-floor")
    t_pub = publish(channel, queue, bodies)
    t_con = consume(channel, queue, len(bodies))
    channel.connection.close()
    return {
        "publish_per_s": round(len(bodies) / t_pub, 1),
        "consume_per_s": round(len(bodies) / t_con, 1),
        "events_per_s": round(len(bodies) / (t_pub + t_con), 1),
    }


def measure_process_start(work: Path) -> float:
    """Milliseconds to spawn and wait for ``cp IN OUT`` from asyncio, one after another."""
    src, dst = work / "spawn.in", work / "spawn.out"
    src.write_text("event")

    async def spawn_all() -> float:
        started = time.perf_counter()
        for _ in range(SPAWN_SAMPLES):
            # own session, as the local backend starts pilots and pilots start tasks (autogroup scheduling)
            proc = await asyncio.create_subprocess_exec(
                "cp", str(src), str(dst), stdin=subprocess.DEVNULL, start_new_session=True
            )
            await proc.wait()
        return time.perf_counter() - started

    return asyncio.run(spawn_all()) / SPAWN_SAMPLES * 1000


def pilot_env(
    node: broker_node.BrokerNode, key: str, qin: str, qout: str, work: Path, index: int, concurrency: int
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EWMS_", "_EWMS_"))}
    env.update(
        EWMS_PILOT_TASK_ARGS="cp {{INFILE}} {{OUTFILE}}",
        EWMS_PILOT_QUEUE_INCOMING=qin,
        EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN=token(key, qin),
        EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE="rabbitmq",
        EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS=node.address,
        EWMS_PILOT_QUEUE_OUTGOING=qout,
        EWMS_PILOT_QUEUE_OUTGOING_AUTH_TOKEN=token(key, qout),
        EWMS_PILOT_QUEUE_OUTGOING_BROKER_TYPE="rabbitmq",
        EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS=node.address,
        EWMS_PILOT_TIMEOUT_QUEUE_INCOMING="1",
        EWMS_PILOT_MAX_CONCURRENT_TASKS=str(concurrency),
        EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST=str(work / f"pilot-{index}"),
        _EWMS_PILOT_JOB_EVENT_LOG=str(work / "pilots.jel"),
        _EWMS_PILOT_CLUSTER_ID="1",
        _EWMS_PILOT_PROC_ID=str(index),
    )
    return env


def measure_pilots(
    node: broker_node.BrokerNode, key: str, bodies: list[bytes], n_pilots: int, concurrency: int, work: Path
) -> dict[str, Any]:
    channel = admin_channel(node)
    qin = declare(channel, f"bench-in-{n_pilots}")
    qout = declare(channel, f"bench-out-{n_pilots}")
    publish(channel, qin, bodies)
    logs = [(work / f"pilot-{n_pilots}-{i}.log").open("w") for i in range(n_pilots)]
    started = time.perf_counter()
    pilots = [
        subprocess.Popen(
            [sys.executable, "-m", "pilot"],
            env=pilot_env(node, key, qin, qout, work, i, concurrency),
            stdout=subprocess.DEVNULL,
            stderr=logs[i],
            start_new_session=True,  # as the local backend starts them: each pilot its own scheduling group
        )
        for i in range(n_pilots)
    ]
    while channel.queue_declare(qout, passive=True).method.message_count < len(bodies):
        if all(p.poll() is not None for p in pilots):
            raise RuntimeError(f"pilots exited early; see {work}/pilot-{n_pilots}-*.log")
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    codes = [p.wait(timeout=60) for p in pilots]
    outputs = channel.queue_declare(qout, passive=True).method.message_count
    channel.connection.close()
    for log in logs:
        log.close()
    return {
        "pilots": n_pilots,
        "concurrency_per_pilot": concurrency,
        "seconds": round(elapsed, 2),
        "events_per_s": round(len(bodies) / elapsed, 1),
        "outputs": outputs,
        "exit_codes": codes,
    }


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
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
