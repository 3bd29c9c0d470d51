"""The whole system on one machine: wire-protocol MongoDB, private RabbitMQ, WMS and a ``local``-backend TMS.

Every part runs as a child process with its state under one data dir. Keys and ports are kept there too, so a
second ``up`` on the same dir brings back the same workflows, queues and tokens.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mqs_client import broker_node
from wms.auth import Role, issue_token
from wms.database import embedded

LOGGER = logging.getLogger(__name__)
STATE_FILE = "stack.json"
LOCATION, SCHEDD = "local", "local-ap"
AUDIENCE = "ewms-dev"
TOKEN_TTL = 30 * 86400


@dataclass
class StackState:
    """What is running and how to reach it (written to ``<data_dir>/stack.json``)."""

    data_dir: str
    supervisor_pid: int
    mongo_port: int
    mongo_pid: int
    broker: dict[str, Any]
    wms_port: int
    wms_pid: int
    tms_pid: int
    user_token: str
    tms_token: str

    @property
    def url(self) -> str:
        """Base URL of the WMS."""
        return f"http://127.0.0.1:{self.wms_port}"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_process(pid: int, what: str, timeout: float = 15.0) -> None:
    """SIGTERM a child's process group, SIGKILL it if it is still there after ``timeout``."""
    if not pid or not _alive(pid):
        return
    embedded.stop_pid(pid, timeout)
    LOGGER.info("%s (pid %d) stopped", what, pid)


class DevStack:
    """Starts and stops the four parts; ``up`` writes the state file, ``down`` reads it."""

    def __init__(self, data_dir: str | Path, max_local_jobs: int = 4, wms_port: int = 0) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.max_local_jobs = max_local_jobs
        self.requested_wms_port = wms_port
        self.state: StackState | None = None

    # ---- keys and previous state -----------------------------------------------------------------------------
    def _keys(self) -> dict[str, str]:
        path = self.data_dir / "keys.json"
        if path.exists():
            return dict(json.loads(path.read_text()))
        keys = {"auth_key": secrets.token_urlsafe(32), "broker_key": secrets.token_urlsafe(32)}
        path.write_text(json.dumps(keys))
        path.chmod(0o600)
        return keys

    def _previous(self) -> dict[str, Any]:
        path = self.data_dir / STATE_FILE
        return dict(json.loads(path.read_text())) if path.exists() else {}

    # ---- start -------------------------------------------------------------------------------------------------
    def up(self) -> StackState:
        """Start every part, wait until each is healthy, write the state file; stops what started on failure."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        previous = self._previous()
        if previous and _alive(previous.get("supervisor_pid", 0)) and previous["supervisor_pid"] != os.getpid():
            raise RuntimeError(f"a dev stack already runs on {self.data_dir} (pid {previous['supervisor_pid']})")
        keys = self._keys()
        started: dict[str, Any] = {}
        try:
            mongo_port = previous.get("mongo_port", 0)
            mongo = embedded.start(
                self.data_dir / "mongo", port=mongo_port if mongo_port and _port_free(mongo_port) else None
            )
            started["mongo"] = mongo
            broker = self._start_broker(keys["broker_key"], previous.get("broker"))
            started["broker"] = broker
            wms_port = self.requested_wms_port or previous.get("wms_port", 0)
            if not wms_port or not _port_free(wms_port):
                wms_port = broker_node.free_port()
            wms_pid = self._spawn(
                "wms", [sys.executable, "-m", "wms"], self._wms_env(mongo.uri, broker, keys, wms_port)
            )
            started["wms_pid"] = wms_pid
            self._wait_http(f"http://127.0.0.1:{wms_port}/v0/", "WMS", wms_pid)
            tms_token = issue_token(keys["auth_key"], "dev-tms", Role.TMS, AUDIENCE, ttl=TOKEN_TTL)
            tms_pid = self._spawn("tms", [sys.executable, "-m", "tms"], self._tms_env(wms_port, tms_token))
            started["tms_pid"] = tms_pid
            time.sleep(0.5)
            if not _alive(tms_pid) or os.waitpid(tms_pid, os.WNOHANG)[0] == tms_pid:
                raise RuntimeError(f"the TMS exited at start; see {self.data_dir / 'tms.log'}")
        except BaseException:
            self._stop_started(started)
            raise
        self.state = StackState(
            data_dir=str(self.data_dir),
            supervisor_pid=os.getpid(),
            mongo_port=mongo.port,
            mongo_pid=mongo.pid,
            broker=asdict(broker),
            wms_port=wms_port,
            wms_pid=wms_pid,
            tms_pid=tms_pid,
            user_token=issue_token(
                keys["auth_key"], os.environ.get("USER", "dev-user"), Role.USER, AUDIENCE, ttl=TOKEN_TTL
            ),
            tms_token=tms_token,
        )
        (self.data_dir / STATE_FILE).write_text(json.dumps(asdict(self.state), indent=2))
        (self.data_dir / "env.sh").write_text(
            f"export EWMS_URL={self.state.url}\nexport EWMS_TOKEN={self.state.user_token}\n"
        )
        LOGGER.info("dev stack ready: WMS %s, broker %s, data %s", self.state.url, broker.address, self.data_dir)
        return self.state

    def _start_broker(self, key: str, previous: dict[str, Any] | None) -> broker_node.BrokerNode:
        ports = None
        if previous:
            wanted = (previous["amqp_port"], previous["management_port"], previous["dist_port"])
            if all(_port_free(p) for p in wanted):
                ports = wanted
        return broker_node.start(self.data_dir / "rabbitmq", key, ports=ports)

    def _wms_env(
        self, mongo_uri: str, broker: broker_node.BrokerNode, keys: dict[str, str], port: int
    ) -> dict[str, str]:
        return {
            **os.environ,
            "MONGODB_URI": mongo_uri,
            "REST_HOST": "127.0.0.1",
            "REST_PORT": str(port),
            "AUTH_SIGNING_KEY": keys["auth_key"],
            "AUTH_AUDIENCE": AUDIENCE,
            "EWMS_CLUSTERS": json.dumps({LOCATION: SCHEDD}),
            "BROKER_ADDRESS": broker.address,
            "BROKER_MANAGEMENT_URL": broker.management_url,
            "BROKER_TOKEN_SIGNING_KEY": keys["broker_key"],
            "MQ_DELETE_GRACE_SECONDS": os.environ.get("MQ_DELETE_GRACE_SECONDS", "5"),
            "MQS_HOUSEKEEPING_INTERVAL_SECONDS": os.environ.get("MQS_HOUSEKEEPING_INTERVAL_SECONDS", "2"),
            "DAEMON_POLL_SECONDS": "0.5",
        }

    def _tms_env(self, wms_port: int, token: str) -> dict[str, str]:
        return {
            **os.environ,
            "EWMS_ADDRESS": f"http://127.0.0.1:{wms_port}",
            "EWMS_TOKEN": token,
            "TMS_SCHEDD": SCHEDD,
            "TMS_BACKEND": "local",
            "TMS_STATE_DIR": str(self.data_dir / "tms"),
            "TMS_LOCAL_MAX_CONCURRENT_JOBS": str(self.max_local_jobs),
            "TMS_POLL_INTERVAL": "0.5",
        }

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> int:
        log = open(self.data_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        LOGGER.info("%s started (pid %d, log %s)", name.upper(), proc.pid, log.name)
        return proc.pid

    def _wait_http(self, url: str, what: str, pid: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid) or os.waitpid(pid, os.WNOHANG)[0] == pid:
                raise RuntimeError(f"the {what} exited at start; see its log in {self.data_dir}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the {what} did not answer {url} within {timeout}s")

    # ---- stop --------------------------------------------------------------------------------------------------
    def _stop_started(self, started: dict[str, Any]) -> None:
        _stop_process(started.get("tms_pid", 0), "TMS")
        _stop_process(started.get("wms_pid", 0), "WMS")
        if "broker" in started:
            broker_node.stop(started["broker"])
        if "mongo" in started:
            embedded.stop(started["mongo"])

    def down(self) -> None:
        """Stop every part recorded in the state file (TMS first, database last)."""
        state = self.state or (StackState(**self._previous()) if self._previous() else None)
        if state is None:
            LOGGER.info("no dev stack recorded in %s", self.data_dir)
            return
        _stop_process(state.tms_pid, "TMS")
        _stop_process(state.wms_pid, "WMS")
        broker_node.stop(broker_node.BrokerNode(**state.broker))
        embedded.stop_pid(state.mongo_pid)
        LOGGER.info("dev stack on %s stopped", self.data_dir)

    def dead_parts(self) -> list[str]:
        """Names of the recorded parts whose process is gone (empty when all run)."""
        assert self.state is not None
        gone = []
        for name, pid in (("WMS", self.state.wms_pid), ("TMS", self.state.tms_pid), ("MongoDB", self.state.mongo_pid)):
            try:
                done = os.waitpid(pid, os.WNOHANG)[0] == pid
            except ChildProcessError:
                done = not _alive(pid)
            if done:
                gone.append(name)
        return gone
