"""MQS settings from the environment, and the factory's choice between the remote and the embedded MQS."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from mqs_client import ConfigError, EmbeddedMQS, MQSConfig, RemoteMQS, make_mqs_client

EMBEDDED = {
    "BROKER_ADDRESS": "broker.example:5672",
    "BROKER_MANAGEMENT_URL": "https://admin:secret@broker.example:15671",
    "BROKER_TOKEN_SIGNING_KEY": "s" * 32,
}


def test_embedded_defaults() -> None:
    config = MQSConfig.from_env(EMBEDDED)
    assert not config.remote
    assert config.broker_type == "rabbitmq"
    assert config.broker_resource_server_id == "rabbitmq" and config.broker_token_key_id == "ewms"
    assert config.broker_token_ttl_seconds == 86400 and config.broker_token_refresh_margin_seconds == 3600
    assert config.mq_delete_grace_seconds == 600 and config.housekeeping_interval_seconds == 30
    assert (config.mq_max_length, config.mq_max_length_bytes, config.mq_delivery_limit) == (1_000_000, 1 << 30, 5)
    assert "secret" not in repr(config) and "s" * 32 not in repr(config)  # the management password, the signing key


def test_values_are_parsed() -> None:
    config = MQSConfig.from_env(
        EMBEDDED
        | {
            "MQ_MAX_LENGTH": "100",
            "MQ_MAX_LENGTH_BYTES": "4096",
            "MQ_DELIVERY_LIMIT": " 2 ",
            "BROKER_RESOURCE_SERVER_ID": "mq",
            "BROKER_TOKEN_KEY_ID": "k1",
            "BROKER_TOKEN_TTL_SECONDS": "7200",
            "BROKER_TOKEN_REFRESH_MARGIN_SECONDS": "600.5",
            "MQ_DELETE_GRACE_SECONDS": "0",
            "MQS_HOUSEKEEPING_INTERVAL_SECONDS": " 2 ",
        }
    )
    assert (config.broker_resource_server_id, config.broker_token_key_id) == ("mq", "k1")
    assert (config.mq_max_length, config.mq_max_length_bytes, config.mq_delivery_limit) == (100, 4096, 2)
    assert config.broker_token_ttl_seconds == 7200 and config.broker_token_refresh_margin_seconds == 600.5
    assert config.mq_delete_grace_seconds == 0 and config.housekeeping_interval_seconds == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "BROKER_ADDRESS, BROKER_MANAGEMENT_URL"),
        (EMBEDDED | {"BROKER_ADDRESS": "broker.example:5672/ewms"}, "vhost of its own"),
        (EMBEDDED | {"BROKER_MANAGEMENT_URL": "amqp://admin:secret@broker.example:5672/%2F"}, "management API"),
        (EMBEDDED | {"MQ_MAX_LENGTH": "1e6"}, "must be an integer"),
        (EMBEDDED | {"MQ_DELIVERY_LIMIT": "0"}, "at least 1"),
        (EMBEDDED | {"BROKER_TOKEN_SIGNING_KEY": ""}, "exactly one of"),
        (EMBEDDED | {"BROKER_TOKEN_PRIVATE_KEY_FILE": "/keys/broker.pem"}, "exactly one of"),
        (EMBEDDED | {"BROKER_TYPE": "nats"}, "rabbitmq only"),
        (EMBEDDED | {"BROKER_TOKEN_TTL_SECONDS": "soon"}, "must be a number"),
        (EMBEDDED | {"MQ_DELETE_GRACE_SECONDS": "-1"}, "must not be negative"),
        (EMBEDDED | {"BROKER_TOKEN_TTL_SECONDS": "3600"}, "must exceed"),
        (EMBEDDED | {"MQS_HOUSEKEEPING_INTERVAL_SECONDS": "0"}, "must be positive"),
        ({"MQS_ADDRESS": "https://mqs.example", "MQS_TOKEN_URL": "https://idp/token"}, "need all of"),
        ({"MQS_ADDRESS": "https://mqs.example", "MQS_API_VERSION": "v9"}, "v0 or v1"),
        (
            {
                "MQS_ADDRESS": "https://mqs.example",
                "MQS_TOKEN_URL": "https://idp/token",
                "MQS_CLIENT_ID": "wms",
                "MQS_CLIENT_SECRET": "x",
                "MQS_STATIC_TOKEN": "t",
            },
            "not both",
        ),
    ],
)
def test_bad_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MQSConfig.from_env(env)


async def test_factory_picks_remote_when_mqs_address_is_set(db: AsyncDatabase[dict[str, Any]]) -> None:
    remote = make_mqs_client(db, MQSConfig.from_env({"MQS_ADDRESS": "https://mqs.example/", "MQS_STATIC_TOKEN": "t"}))
    assert isinstance(remote, RemoteMQS) and remote.address == "https://mqs.example"
    await remote.close()
    embedded = make_mqs_client(db, MQSConfig.from_env(EMBEDDED))
    assert isinstance(embedded, EmbeddedMQS)
    await embedded.close()
