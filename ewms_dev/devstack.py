"""The whole system on one machine: wire-protocol MongoDB, private RabbitMQ, WMS and one ``local``-backend TMS per
cluster location (``local``, then ``local-2``, ``local-3``, ... each its own access point).

Every part runs as a child process with its state under one data dir (mode 0700). Keys, tokens and ports are kept
there too, in files created with mode 0600, so a second ``up`` on the same dir brings back the same workflows,
queues and tokens.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ewms_dev import broker_node, processes
from ewms_dev import mongo_server as embedded
from ewms_dev.service_env import tms_env, wms_env
from tms.files import atomic_write_text
from wms.auth import Role, issue_token

LOGGER = logging.getLogger(__name__)
STATE_FILE = "stack.json"
PRIVATE = 0o600  # every file holding a key or a token
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
    tms_pids: dict[str, int]  # cluster location -> pid of its TMS
    user_token: str
    tms_token: str

    @property
    def url(self) -> str:
        """Base URL of the WMS."""
        return f"http://127.0.0.1:{self.wms_port}"


def location(n: int) -> tuple[str, str]:
    """The cluster location and schedd name of the ``n``-th access point (from 1): ``local``/``local-ap``, then
    ``local-2``/``local-ap-2``, ..."""
    return ("local", "local-ap") if n == 1 else (f"local-{n}", f"local-ap-{n}")


def _stop_process(pid: int, what: str) -> None:
    if pid and processes.alive(pid):
        processes.stop(pid)
        LOGGER.info("%s (pid %d) stopped", what, pid)


class DevStack:
    """Starts and stops the four parts; ``up`` writes the state file, ``down`` reads it."""

    def __init__(self, data_dir: str | Path, max_local_jobs: int = 4, wms_port: int = 0, locations: int = 1) -> None:
        if locations < 1:
            raise ValueError("a dev stack needs at least one location")
        self.data_dir = Path(data_dir).resolve()
        self.max_local_jobs = max_local_jobs
        self.requested_wms_port = wms_port
        self.locations = dict(location(n) for n in range(1, locations + 1))
        self.state: StackState | None = None

    # ---- keys and previous state -----------------------------------------------------------------------------
    def _keys(self) -> dict[str, str]:
        path = self.data_dir / "keys.json"
        if path.exists():
            return dict(json.loads(path.read_text()))
        keys = {"auth_key": secrets.token_urlsafe(32), "broker_key": secrets.token_urlsafe(32)}
        atomic_write_text(path, json.dumps(keys), mode=PRIVATE)
        return keys

    def _previous(self) -> dict[str, Any]:
        path = self.data_dir / STATE_FILE
        return dict(json.loads(path.read_text())) if path.exists() else {}

    # ---- start -------------------------------------------------------------------------------------------------
    def up(self) -> StackState:
        """Start every part, wait until each is healthy, write the state file; stops what started on failure."""
        make_data_dir(self.data_dir)
        previous = self._previous()
        supervisor = previous.get("supervisor_pid", 0)
        if previous and processes.alive(supervisor) and supervisor != os.getpid():
            raise RuntimeError(f"a dev stack already runs on {self.data_dir} (pid {previous['supervisor_pid']})")
        keys = self._keys()
        started: dict[str, Any] = {}
        try:
            mongo_port = previous.get("mongo_port", 0)
            mongo = embedded.start(
                self.data_dir / "mongo", port=mongo_port if mongo_port and processes.port_free(mongo_port) else None
            )
            started["mongo"] = mongo
            broker = self._start_broker(keys["broker_key"], previous.get("broker"))
            started["broker"] = broker
            wms_port = self.requested_wms_port or previous.get("wms_port", 0)
            if not wms_port or not processes.port_free(wms_port):
                wms_port = processes.free_port()
            wms_pid = processes.start_wms(self._wms_env(mongo.uri, broker, keys, wms_port), self._log("wms")).pid
            started["wms_pid"] = wms_pid
            tms_token = issue_token(keys["auth_key"], "dev-tms", Role.TMS, AUDIENCE, ttl=TOKEN_TTL)
            tms_pids = started["tms_pids"] = {}
            for where in self.locations:
                env, log = self._tms_env(wms_port, tms_token, where), self._log(self._tms_name(where))
                tms_pids[where] = processes.spawn([sys.executable, "-m", "tms"], env, log).pid
            time.sleep(0.5)
            for where, pid in tms_pids.items():
                if not processes.alive(pid):
                    raise RuntimeError(f"the TMS of {where} exited at start; see {self._log(self._tms_name(where))}")
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
            tms_pids=tms_pids,
            user_token=issue_token(
                keys["auth_key"], os.environ.get("USER", "dev-user"), Role.USER, AUDIENCE, ttl=TOKEN_TTL
            ),
            tms_token=tms_token,
        )
        atomic_write_text(self.data_dir / STATE_FILE, json.dumps(asdict(self.state), indent=2), mode=PRIVATE)
        atomic_write_text(
            self.data_dir / "env.sh",
            f"export EWMS_URL={self.state.url}\nexport EWMS_TOKEN={self.state.user_token}\n",
            mode=PRIVATE,
        )
        LOGGER.info("dev stack ready: WMS %s, broker %s, data %s", self.state.url, broker.address, self.data_dir)
        return self.state

    def _start_broker(self, key: str, previous: dict[str, Any] | None) -> broker_node.BrokerNode:
        ports = None
        if previous:
            wanted = (previous["amqp_port"], previous["management_port"], previous["dist_port"])
            if all(processes.port_free(p) for p in wanted):
                ports = wanted
        return broker_node.start(self.data_dir / "rabbitmq", key, ports=ports)

    def _wms_env(
        self, mongo_uri: str, broker: broker_node.BrokerNode, keys: dict[str, str], port: int
    ) -> dict[str, str]:
        return {
            **os.environ,
            **wms_env(mongo_uri, broker, keys["auth_key"], AUDIENCE, self.locations, port),
            "MQ_DELETE_GRACE_SECONDS": os.environ.get("MQ_DELETE_GRACE_SECONDS", "5"),
            "MQS_HOUSEKEEPING_INTERVAL_SECONDS": os.environ.get("MQS_HOUSEKEEPING_INTERVAL_SECONDS", "2"),
            "DAEMON_POLL_SECONDS": "0.5",
        }

    @staticmethod
    def _tms_name(where: str) -> str:
        """``tms`` for location ``local`` (its state in ``tms/``, its log ``tms.log``), ``tms-N`` for ``local-N``."""
        return "tms" + where.removeprefix("local")

    def _tms_env(self, wms_port: int, token: str, where: str) -> dict[str, str]:
        schedd, state_dir = self.locations[where], self.data_dir / self._tms_name(where)
        return {
            **os.environ,
            **tms_env(f"http://127.0.0.1:{wms_port}", token, schedd, state_dir),
            "TMS_LOCAL_MAX_CONCURRENT_JOBS": str(self.max_local_jobs),
            "TMS_POLL_INTERVAL": "0.5",
        }

    def _log(self, name: str) -> Path:
        return self.data_dir / f"{name}.log"

    # ---- stop --------------------------------------------------------------------------------------------------
    def _stop_started(self, started: dict[str, Any]) -> None:
        for where, pid in started.get("tms_pids", {}).items():
            _stop_process(pid, f"TMS of {where}")
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
        for where, pid in state.tms_pids.items():
            _stop_process(pid, f"TMS of {where}")
        _stop_process(state.wms_pid, "WMS")
        broker_node.stop(broker_node.BrokerNode(**state.broker))
        _stop_process(state.mongo_pid, "MongoDB")
        LOGGER.info("dev stack on %s stopped", self.data_dir)

    def dead_parts(self) -> list[str]:
        """Names of the recorded parts whose process is gone (empty when all run)."""
        assert self.state is not None
        parts = [("WMS", self.state.wms_pid), ("MongoDB", self.state.mongo_pid)]
        parts += [(f"TMS of {where}", pid) for where, pid in self.state.tms_pids.items()]
        return [name for name, pid in parts if not processes.alive(pid)]


@contextmanager
def environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    """This process's environment with ``changes`` (None unsets) for the block, restored after; the parts a dev
    stack starts inherit it."""
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            _set(name, value)
        yield
    finally:
        for name, value in saved.items():
            _set(name, value)


def _set(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@contextmanager
def stack_running(
    data_dir: str | Path, settings: Mapping[str, str | None] | None = None, **options: Any
) -> Iterator[DevStack]:
    """A dev stack up for the block (``options`` as for :class:`DevStack`) with ``settings`` in the environment of
    its parts, down after, even when starting it failed half-way."""
    with environment(settings or {}):
        stack = DevStack(data_dir, **options)
        try:
            stack.up()
            yield stack
        finally:
            stack.down()


def running_state(data_dir: str | Path) -> StackState | None:
    """The state of the stack running on ``data_dir``, or None when none is recorded or its supervisor is gone."""
    path = Path(data_dir) / STATE_FILE
    try:
        state = StackState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return state if processes.alive(state.supervisor_pid) else None


def make_data_dir(path: Path) -> None:
    """Create the stack's data dir with mode 0700 (an existing one, e.g. from an older version, is set to it)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != 0o700:
        path.chmod(0o700)
