"""Shared helpers for pilot tests: the broker's admin side, tokens, running ``python -m pilot``, reading reports."""

from __future__ import annotations

import re
import socketserver
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import htcondor2
import httpx
import pika
from broker_probe import queue_exists
from broker_tokens import mint_token

from ewms_dev.broker_node import BrokerNode
from ewms_wire.chirp import ChirpAttr, ChirpValue, parse_chirp
from pilot.events_io import Event, decode_event, encode_event

PILOT_TIMEOUT = 60


@dataclass
class Broker:
    """Admin access to the test broker: declare queues, publish and drain events, list connections."""

    node: BrokerNode
    key: str

    @property
    def address(self) -> str:
        return self.node.address

    def _channel(self, vhost: str = "/") -> tuple[pika.BlockingConnection, Any]:
        url = self.node.admin_url_in(vhost)
        conn = pika.BlockingConnection(pika.URLParameters(url))
        return conn, conn.channel()

    @property
    def admin(self) -> tuple[str, str]:
        """The node's administrator (the private node has no guest user)."""
        return self.node.admin_user, self.node.admin_password

    def management(self, method: str, path: str, json: Any = None) -> None:
        """Call the management HTTP API as the loopback admin; fail on an error status."""
        url = f"http://127.0.0.1:{self.node.management_port}/api/{path}"
        httpx.request(method, url, json=json, auth=self.admin, timeout=30).raise_for_status()

    def new_vhost(self) -> str:
        """Create a fresh vhost the admin may use."""
        vhost = f"wf-{uuid.uuid4().hex[:10]}"
        self.management("PUT", f"vhosts/{vhost}")
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        self.management("PUT", f"permissions/{vhost}/{self.node.admin_user}", everything)
        return vhost

    def delete_queue(self, queue: str) -> None:
        """Delete a queue through the management API (as the MQS does when a workflow's queues are torn down)."""
        self.management("DELETE", f"queues/%2F/{queue}")

    def has_queue(self, queue: str) -> bool:
        """Whether the broker has ``queue`` (in the default vhost)."""
        return queue_exists(self.node.admin_url, queue)

    def new_queues(self, count: int, vhost: str = "/") -> list[str]:
        """Declare ``count`` fresh quorum queues (as oms-mqclient would)."""
        names = [f"pt-{uuid.uuid4().hex[:12]}" for _ in range(count)]
        conn, ch = self._channel(vhost)
        for name in names:
            ch.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
        conn.close()
        return names

    def publish(self, queue: str, events: Iterable[Any], vhost: str = "/") -> None:
        """Publish envelopes with publisher confirms."""
        conn, ch = self._channel(vhost)
        ch.confirm_delivery()
        for data in events:
            ch.basic_publish("", queue, encode_event(Event(data)))
        conn.close()

    def publish_raw(self, queue: str, body: bytes) -> None:
        """Publish a body that need not be an envelope."""
        conn, ch = self._channel()
        ch.confirm_delivery()
        ch.basic_publish("", queue, body)
        conn.close()

    def drain(self, queue: str, vhost: str = "/") -> list[Event]:
        """Take every ready event out of ``queue``."""
        conn, ch = self._channel(vhost)
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

    def close_connections_of(self, user: str, count: int) -> None:
        """Force-close the ``count`` AMQP connections authenticated as ``user`` (the token's ``sub``).

        Through the management API (``rabbitmqctl`` boots an Erlang VM per call: seconds on a loaded machine), whose
        connection list follows the statistics interval: wait until all ``count`` are listed."""
        url = f"http://127.0.0.1:{self.node.management_port}/api/connections"
        deadline = time.monotonic() + 30  # liveness bound: a few statistics intervals
        while True:
            listed = httpx.get(url, params={"columns": "name,user"}, auth=self.admin, timeout=30)
            names = [c["name"] for c in listed.raise_for_status().json() if c.get("user") == user]
            if len(names) >= count:
                break
            assert time.monotonic() < deadline, f"{user} has {len(names)} connections listed, not {count}"
            time.sleep(0.2)
        for name in names:
            closed = httpx.delete(f"{url}/{urllib.parse.quote(name, safe='')}", auth=self.admin, timeout=30)
            if closed.status_code != 404:  # 404: it closed meanwhile (the pilot ended on the first one's loss)
                closed.raise_for_status()


def queue_env(
    broker: Broker, direction: str, queues: list[str], sub: str = "pilot", ttl: float = 600, vhost: str = ""
) -> dict[str, str]:
    """``EWMS_PILOT_QUEUE_<direction>*`` for ``queues``, one token per queue, joined with ';' as the TMS does.

    With ``vhost`` the address is ``host:port/vhost`` (as per-workflow vhosts give it)."""
    prefix = f"EWMS_PILOT_QUEUE_{direction}"
    address = f"{broker.address}/{vhost}" if vhost else broker.address
    return {
        prefix: ";".join(queues),
        f"{prefix}_AUTH_TOKEN": ";".join(mint_token(broker.key, [q], sub, ttl, vhost or "/") for q in queues),
        f"{prefix}_BROKER_TYPE": ";".join("rabbitmq" for _ in queues),
        f"{prefix}_BROKER_ADDRESS": ";".join(address for _ in queues),
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
