"""Pilots longer than their tokens: renewal through a command or a URL, and what happens without a source."""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from broker_tokens import mint_token
from pilot_helpers import Broker, last_values, queue_env, run_pilot

from ewms_wire.chirp import ChirpAttr

pytestmark = pytest.mark.long_file

EnvFactory = Callable[..., dict[str, str]]
TTL = 3  # seconds a token lives
URL_SUB = "url-renewing-pilot"  # a renewed token must name the same subject
COPY_SLOWLY = """sh -c 'sleep 0.3; cp "$EWMS_TASK_INFILE" "$EWMS_TASK_OUTFILE"'"""

MINT_SCRIPT = """
import sys
sys.path.insert(0, {helpers!r})
from broker_tokens import mint_token
key, ttl, sub, queue = open(sys.argv[1]).read(), float(sys.argv[2]), sys.argv[3], sys.argv[4]
print(mint_token(key, [queue], sub=sub, ttl=ttl))
"""


def short_lived_env(
    rmq: Broker, pilot_env: EnvFactory, qin: str, qout: str, ttl: float, sub: str, **overrides: str
) -> dict[str, str]:
    env = pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS=COPY_SLOWLY, **overrides)
    env.update(queue_env(rmq, "INCOMING", [qin], sub, ttl=ttl))
    env.update(queue_env(rmq, "OUTGOING", [qout], sub, ttl=ttl))
    return env


class ConnectionDropper(threading.Thread):
    """Closes the pilot's connections once its first tokens have expired: it must reconnect with a valid token."""

    def __init__(self, rmq: Broker, sub: str, after: float) -> None:
        super().__init__()
        self.rmq, self.sub, self.at = rmq, sub, time.time() + after
        self.closed = False
        self.start()

    def run(self) -> None:
        time.sleep(max(0.0, self.at - time.time()))
        self.rmq.close_connections_of(self.sub, 2)  # its input and output connections
        self.closed = True


def test_a_pilot_running_ten_times_longer_than_its_tokens_renews_them(
    rmq: Broker, pilot_env: EnvFactory, tmp_path: Path
) -> None:
    key_file, script = tmp_path / "broker.key", tmp_path / "mint.py"
    key_file.write_text(rmq.key)
    script.write_text(MINT_SCRIPT.format(helpers=str(Path(__file__).parent)))
    qin, qout = rmq.new_queues(2)
    events = [f"e{i:03d}" for i in range(100)]  # 100 x 0.3 s of task alone: ten token lifetimes
    rmq.publish(qin, events)
    sub = f"renewing-{uuid.uuid4().hex[:8]}"
    command = f"{sys.executable} {script} {key_file} {TTL} {sub}"
    env = short_lived_env(rmq, pilot_env, qin, qout, TTL, sub, EWMS_PILOT_QUEUE_TOKEN_REFRESH_COMMAND=command)
    dropper = ConnectionDropper(rmq, sub, after=4 * TTL)
    result = run_pilot(env, timeout=240)
    dropper.join()
    assert dropper.closed  # while it was running
    assert result.returncode == 0, result.stderr[-3000:]
    assert "connection lost" in result.stderr
    assert set(e.data for e in rmq.drain(qout)) == set(events)  # at-least-once: the drop may duplicate one
    assert rmq.count(qin) == 0
    for role, queue in (("input", qin), ("output", qout)):
        assert result.stderr.count(f"{role} queue {queue} at amqp://{rmq.address}/%2F: token renewed") >= 10


def test_without_a_token_source_a_reconnection_after_expiry_is_refused_and_loses_nothing(
    rmq: Broker, pilot_env: EnvFactory, tmp_path: Path
) -> None:
    qin, qout = rmq.new_queues(2)
    events = [f"e{i:02d}" for i in range(80)]  # 80 x 0.3 s of task alone: past the expiry
    rmq.publish(qin, events)
    sub = f"expiring-{uuid.uuid4().hex[:8]}"
    ttl = 8  # longer than the pilot's start on a loaded machine: its first connections must succeed
    dropper = ConnectionDropper(rmq, sub, after=ttl + 1)
    result = run_pilot(short_lived_env(rmq, pilot_env, qin, qout, ttl, sub), timeout=120)
    dropper.join()
    assert dropper.closed
    assert result.returncode == 1
    assert "the broker refused the pilot" in str(last_values(tmp_path / "pilot.jel")[ChirpAttr.ERROR])
    outputs = [e.data for e in rmq.drain(qout)]
    assert len(outputs) < len(events)
    assert set(outputs) | {e.data for e in rmq.drain(qin)} == set(events)


class TokenRoute(ThreadingHTTPServer):
    """The route a pilot renews its tokens at: ``POST /v0/pilot/queues/{queue}/token`` with its credential."""

    def __init__(self, key: str) -> None:
        super().__init__(("127.0.0.1", 0), TokenRouteHandler)
        self.key = key
        self.credential = "pilot-credential-for-this-test"
        self.calls: list[str] = []


class TokenRouteHandler(BaseHTTPRequestHandler):
    server: TokenRoute

    def do_POST(self) -> None:
        parts = self.path.strip("/").split("/")
        if self.headers.get("Authorization") != f"Bearer {self.server.credential}":
            self.send_response(401)
            self.end_headers()
            return
        queue = parts[3]
        self.server.calls.append(queue)
        body = json.dumps({"auth_token": mint_token(self.server.key, [queue], sub=URL_SUB, ttl=TTL)})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def token_route(rmq: Broker) -> Iterator[TokenRoute]:
    server = TokenRoute(rmq.key)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_tokens_expired_before_the_start_are_renewed_at_a_url_before_connecting(
    rmq: Broker, pilot_env: EnvFactory, token_route: TokenRoute
) -> None:
    qin, qout = rmq.new_queues(2)
    events = [f"e{i:02d}" for i in range(15)]
    rmq.publish(qin, events)
    url = f"http://127.0.0.1:{token_route.server_address[1]}/v0/pilot/queues/{{queue}}/token"
    env = short_lived_env(
        rmq,
        pilot_env,
        qin,
        qout,
        ttl=-60,
        sub=URL_SUB,  # the job waited in the scheduler's queue longer than its tokens live
        EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL=url,
        EWMS_PILOT_QUEUE_TOKEN_REFRESH_CREDENTIAL=token_route.credential,
    )
    result = run_pilot(env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(e.data for e in rmq.drain(qout)) == events
    assert token_route.calls[:2] == [qout, qin]  # renewed before connecting: outputs first, then inputs
    assert token_route.calls.count(qin) >= 2 and token_route.calls.count(qout) >= 2  # and again while running


def test_a_refused_credential_is_reported(rmq: Broker, pilot_env: EnvFactory, token_route: TokenRoute) -> None:
    qin, qout = rmq.new_queues(2)
    rmq.publish(qin, ["e"])
    url = f"http://127.0.0.1:{token_route.server_address[1]}/v0/pilot/queues/{{queue}}/token"
    env = short_lived_env(
        rmq,
        pilot_env,
        qin,
        qout,
        ttl=-60,
        sub=URL_SUB,
        EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL=url,
        EWMS_PILOT_QUEUE_TOKEN_REFRESH_CREDENTIAL="wrong",
    )
    result = run_pilot(env, timeout=60)
    assert result.returncode == 1
    assert "token renewal failed (the token expires in -6" in result.stderr
    assert "HTTP Error 401" in result.stderr
    assert rmq.count(qin) == 1
