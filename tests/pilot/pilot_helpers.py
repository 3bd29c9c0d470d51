"""Shared helpers for pilot tests: the broker's admin side, tokens, running ``python -m pilot``, reading reports."""

from __future__ import annotations

import re
import socketserver
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import htcondor2
import jwt
import pika

from ewms_dev.broker_node import BrokerNode
from ewms_wire.chirp import ChirpAttr, ChirpValue, parse_chirp
from pilot.events_io import Event, decode_event, encode_event

PILOT_TIMEOUT = 60


def mint_token(key: str, queues: Iterable[str], sub: str = "pilot") -> str:
    """A broker JWT with read/write/configure on each queue, plus publishing through the default exchange."""
    scopes = []
    for q in queues:
        scopes += [f"rabbitmq.read:%2F/{q}", f"rabbitmq.write:%2F/{q}", f"rabbitmq.configure:%2F/{q}"]
    scopes.append("rabbitmq.write:%2F/amq.default")
    claims = {"sub": sub, "aud": "rabbitmq", "exp": int(time.time()) + 600, "scope": " ".join(scopes)}
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": "ewms"})


@dataclass
class Broker:
    """Admin access to the test broker: declare queues, publish and drain events, list connections."""

    node: BrokerNode
    key: str

    @property
    def address(self) -> str:
        return self.node.address

    def _channel(self) -> tuple[pika.BlockingConnection, Any]:
        conn = pika.BlockingConnection(pika.URLParameters(self.node.admin_url))
        return conn, conn.channel()

    def new_queues(self, count: int) -> list[str]:
        """Declare ``count`` fresh quorum queues (as oms-mqclient would)."""
        names = [f"pt-{uuid.uuid4().hex[:12]}" for _ in range(count)]
        conn, ch = self._channel()
        for name in names:
            ch.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
        conn.close()
        return names

    def publish(self, queue: str, events: Iterable[Any]) -> None:
        """Publish envelopes with publisher confirms."""
        conn, ch = self._channel()
        ch.confirm_delivery()
        for data in events:
            ch.basic_publish("", queue, encode_event(Event(data)))
        conn.close()

    def drain(self, queue: str) -> list[Event]:
        """Take every ready event out of ``queue``."""
        conn, ch = self._channel()
        events = []
        while True:
            method, _props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                break
            events.append(decode_event(body))
        conn.close()
        return events

    def count(self, queue: str) -> int:
        """Ready messages in ``queue``."""
        conn, ch = self._channel()
        n = int(ch.queue_declare(queue, passive=True).method.message_count)
        conn.close()
        return n

    def _ctl(self, *args: str) -> str:
        result = subprocess.run(
            ["rabbitmqctl", "-n", self.node.nodename, "-q", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout

    def close_connections_of(self, user: str) -> int:
        """Force-close every AMQP connection authenticated as ``user`` (the token's ``sub``); return how many."""
        users = self._ctl("list_connections", "user", "--no-table-headers").split()
        self._ctl("close_all_user_connections", user, "closed by test")
        return users.count(user)


def queue_env(broker: Broker, direction: str, queues: list[str], sub: str = "pilot") -> dict[str, str]:
    """``EWMS_PILOT_QUEUE_<direction>*`` for ``queues``, one token per queue, joined with ';' as the TMS does."""
    prefix = f"EWMS_PILOT_QUEUE_{direction}"
    return {
        prefix: ";".join(queues),
        f"{prefix}_AUTH_TOKEN": ";".join(mint_token(broker.key, [q], sub) for q in queues),
        f"{prefix}_BROKER_TYPE": ";".join("rabbitmq" for _ in queues),
        f"{prefix}_BROKER_ADDRESS": ";".join(broker.address for _ in queues),
    }


def run_pilot(env: dict[str, str], timeout: float = PILOT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pilot`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "pilot"], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def start_pilot(env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``python -m pilot`` in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "pilot"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def chirps(jel_path: Path) -> list[tuple[ChirpAttr, ChirpValue]]:
    """Every pilot chirp in a job event log, read with ``htcondor2.JobEventLog``."""
    out = []
    for event in htcondor2.JobEventLog(str(jel_path)).events(stop_after=0):
        parsed = parse_chirp(event.get("info", ""))
        if parsed is not None:
            out.append(parsed)
    return out


def statuses(jel_path: Path) -> list[ChirpValue]:
    """The sequence of reported statuses."""
    return [value for attr, value in chirps(jel_path) if attr is ChirpAttr.STATUS]


def last_values(jel_path: Path) -> dict[ChirpAttr, ChirpValue]:
    """The last reported value of each attribute."""
    return dict(chirps(jel_path))


class FakeChirpServer(socketserver.ThreadingTCPServer):
    """Speaks the HTCondor chirp line protocol: cookie auth, then ``ulog`` / ``set_job_attr`` commands."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeChirpHandler)
        self.cookie = "s3cret"
        self.lines: list[str] = []
        self.attrs: dict[str, str] = {}


class FakeChirpHandler(socketserver.StreamRequestHandler):
    server: FakeChirpServer

    def handle(self) -> None:
        for raw in self.rfile:
            command, _, rest = raw.decode().rstrip("\n").partition(" ")
            args = [re.sub(r"\\(.)", r"\1", a) for a in re.split(r"(?<!\\) ", rest)]
            if command == "cookie":
                ok = args[0] == self.server.cookie
            elif command == "ulog":
                self.server.lines.append(" ".join(args))
                ok = True
            elif command == "set_job_attr":
                self.server.attrs[args[0]] = " ".join(args[1:])
                ok = True
            else:
                ok = False
            self.wfile.write(b"0\n" if ok else b"-1\n")
