"""Session fixtures shared by every test: a real wire-protocol MongoDB, a private RabbitMQ node, auth keys."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apiclient import AUDIENCE, Api

from ewms_dev import broker_node, processes
from ewms_dev import mongo_server as embedded
from ewms_dev.service_env import wms_env
from wms.auth import Role, issue_token
from wms.config import WMSConfig
from wms.service import WMS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files marked ``long_file`` first (each worker takes whole files in this order), the rest as collected."""
    items.sort(key=lambda item: item.get_closest_marker("long_file") is None)


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of an ``nx-27017`` server on disk for the whole session (or ``MONGODB_URI`` when set)."""
    if os.environ.get("MONGODB_URI"):
        yield os.environ["MONGODB_URI"]
        return
    server = embedded.start(tmp_path_factory.mktemp("mongo"))
    yield server.uri
    embedded.stop(server)


@pytest.fixture(scope="session")
def broker_signing_key() -> str:
    """HS256 secret that the private broker's OAuth2 backend trusts."""
    return secrets.token_urlsafe(32)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory, broker_signing_key: str) -> Iterator[broker_node.BrokerNode]:
    """A private RabbitMQ node (own ports and data dir) with the OAuth2 backend, for the whole session."""
    # a short path: Erlang and RabbitMQ dislike very long data dirs
    data = Path(tmp_path_factory.mktemp("rmq"))
    node = broker_node.start(data, broker_signing_key)
    yield node
    broker_node.stop(node)


@pytest.fixture(scope="session")
def auth_key() -> str:
    """HS256 key the WMS under test validates bearer tokens with."""
    return secrets.token_urlsafe(32)


@pytest.fixture(scope="session")
def make_token(auth_key: str):  # type: ignore[no-untyped-def]
    """Factory: ``make_token(role, subject="alice", **claims)`` -> a real signed bearer token."""

    def _make(role: Role | str = Role.USER, subject: str = "alice", **claims: object) -> str:
        return issue_token(auth_key, subject, role, AUDIENCE, **claims)

    return _make


@dataclass
class WMSUnderTest:
    """A WMS running in the test event loop, on a free port, against the session database and broker."""

    url: str
    wms: WMS
    config: WMSConfig


WMS_CLUSTERS = {"test-alpha": "schedd-alpha.test", "test-beta": "schedd-beta.test", "local": "local-ap.test"}


def wms_test_env(mongo_uri: str, broker: broker_node.BrokerNode, auth_key: str, port: int = 0) -> dict[str, str]:
    """Environment for a WMS under test (embedded MQS on the private broker, fast daemons, a fresh database)."""
    return {
        **wms_env(mongo_uri, broker, auth_key, AUDIENCE, WMS_CLUSTERS, port),
        "WMS_DB_NAME": f"wms_{secrets.token_hex(4)}",
        "MQ_DELETE_GRACE_SECONDS": "0",
        "MQS_HOUSEKEEPING_INTERVAL_SECONDS": "0.5",
        "DAEMON_POLL_SECONDS": "0.2",
        "DAEMON_LEASE_SECONDS": "6",  # a WMS killed by a test is replaced within about 7.5 s
        "MQ_ACTIVATION_RETRY_MIN_SECONDS": "0.2",
        "MQ_ACTIVATION_RETRY_MAX_SECONDS": "1",
    }


@pytest.fixture
async def wms_server(mongo_uri: str, broker: broker_node.BrokerNode, auth_key: str) -> AsyncIterator[WMSUnderTest]:
    """A real WMS (REST server, daemons, embedded MQS) with its own fresh database, in the test event loop."""
    config = WMSConfig.from_env(wms_test_env(mongo_uri, broker, auth_key))
    wms = WMS(config)
    await wms.start()
    yield WMSUnderTest(url=f"http://127.0.0.1:{wms.port}", wms=wms, config=config)
    await wms.stop()


@pytest.fixture
def api(wms_server: WMSUnderTest, make_token) -> Api:  # type: ignore[no-untyped-def]
    """A validated client for user ``alice``; ``api_as(role, subject)`` gives others."""
    return Api(wms_server.url, make_token(Role.USER, "alice"))


@pytest.fixture
def api_as(wms_server: WMSUnderTest, make_token):  # type: ignore[no-untyped-def]
    """Factory: ``api_as(role, subject)`` -> a validated client with that caller's token (role None: no token)."""

    def _make(role: Role | str | None, subject: str = "alice") -> Api:
        return Api(wms_server.url, None if role is None else make_token(role, subject))

    return _make


@pytest.fixture
async def start_wms(
    mongo_uri: str, broker: broker_node.BrokerNode, auth_key: str
) -> AsyncIterator[Callable[..., Awaitable[WMSUnderTest]]]:
    """Factory: ``await start_wms(**env_overrides)`` -> another WMS (stopped at teardown unless stopped before)."""
    started: list[WMS] = []

    async def _start(**overrides: str) -> WMSUnderTest:
        config = WMSConfig.from_env({**wms_test_env(mongo_uri, broker, auth_key), **overrides})
        wms = WMS(config)
        await wms.start()
        started.append(wms)
        return WMSUnderTest(url=f"http://127.0.0.1:{wms.port}", wms=wms, config=config)

    yield _start
    for wms in started:
        await wms.stop()


@dataclass
class WMSProcess:
    """A WMS running as its own process."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def spawn_wms(
    mongo_uri: str, broker: broker_node.BrokerNode, auth_key: str, tmp_path: Path
) -> Iterator[Callable[..., WMSProcess]]:
    """Factory: ``spawn_wms(**env_overrides)`` -> a healthy ``python -m wms`` process; all are stopped at teardown,
    and each must then exit cleanly."""
    procs: list[WMSProcess] = []
    db_name = f"wms_{secrets.token_hex(4)}"

    def _spawn(**overrides: str) -> WMSProcess:
        port = processes.free_port()
        env = {**os.environ, **wms_test_env(mongo_uri, broker, auth_key, port), "WMS_DB_NAME": db_name, **overrides}
        log_path = tmp_path / f"wms-{len(procs)}.log"
        procs.append(WMSProcess(f"http://127.0.0.1:{port}", processes.start_wms(env, log_path), log_path))
        return procs[-1]

    yield _spawn
    for wms in procs:
        if wms.proc.poll() is None:
            assert processes.stop(wms.proc.pid, timeout=20) == 0, wms.log.read_text()[-3000:]


@pytest.fixture
def wms_process(spawn_wms: Callable[..., WMSProcess]) -> str:
    """A WMS as its own process (``python -m wms``) with a fresh database; its base URL."""
    return spawn_wms().url


FIGURES_ENV = "EWMS_RELIABILITY_FIGURES"


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """What a scenario measured (faults injected, items lost, duplicates, ...), appended as one JSON line to the
    file named by ``EWMS_RELIABILITY_FIGURES`` when that is set."""
    measured: dict[str, Any] = {}
    yield measured
    target = os.environ.get(FIGURES_ENV)
    if target and measured:
        with open(target, "a") as f:
            f.write(json.dumps({"test": request.node.name, **measured}) + "\n")
