"""Session fixtures shared by every test: a real wire-protocol MongoDB, a private RabbitMQ node, auth keys."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqs_client import broker_node
from wms.auth import Role, issue_token
from wms.database import embedded

AUDIENCE = "ewms-test"


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
