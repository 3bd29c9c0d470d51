"""Fixtures for the MQS tests: a fresh database per test and an embedded MQS on the session's private broker."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from ewms_dev.broker_node import BrokerNode
from mqs_client import EmbeddedMQS, MQSConfig


@pytest.fixture
async def db(mongo_uri: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """A database of its own on the session's wire-protocol MongoDB."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    yield client[f"t_{uuid.uuid4().hex[:8]}"]
    await client.close()


@pytest.fixture
def mqs_config(broker: BrokerNode, broker_signing_key: str) -> MQSConfig:
    """Embedded-MQS settings for the private broker: no deletion grace, fast housekeeping."""
    return MQSConfig(
        broker_address=broker.address,
        broker_management_url=broker.management_url,
        broker_token_signing_key=broker_signing_key,
        mq_delete_grace_seconds=0,
        housekeeping_interval_seconds=0.2,
    )


@pytest.fixture
def make_mqs(db: AsyncDatabase[dict[str, Any]], mqs_config: MQSConfig) -> Callable[..., EmbeddedMQS]:
    """Factory: ``make_mqs(**config_changes)`` -> an embedded MQS on the test's database."""

    def _make(**changes: Any) -> EmbeddedMQS:
        return EmbeddedMQS(db, dataclasses.replace(mqs_config, **changes))

    return _make


@pytest.fixture
async def mqs(make_mqs: Callable[..., EmbeddedMQS]) -> AsyncIterator[EmbeddedMQS]:
    """An embedded MQS with its indexes."""
    service = make_mqs()
    await service.ensure_indexes()
    yield service
    await service.close()
