"""Queue tokens: claims, HS256 and RS256 signing, and RS256 accepted by the real broker."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pika
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from mqs_helpers import connect, pika_roundtrip

from ewms_dev import broker_node
from ewms_dev.broker_node import BrokerNode
from mqs_client import ConfigError, MQSConfig
from mqs_client.broker_admin import BrokerAdmin
from mqs_client.tokens import TokenMinter, queue_scopes


def test_scopes_encode_the_vhost() -> None:
    assert queue_scopes("rabbitmq", "/", "q1").split() == [
        "rabbitmq.read:%2F/q1",
        "rabbitmq.write:%2F/q1",
        "rabbitmq.configure:%2F/q1",
        "rabbitmq.write:%2F/amq.default",
    ]
    assert queue_scopes("mq-prod", "ewms/prod", "q2").split()[0] == "mq-prod.read:ewms%2Fprod/q2"


def test_hs256_token_claims() -> None:
    config = MQSConfig(
        broker_address="broker:5672",
        broker_management_url="http://admin:pw@broker:15672",
        broker_token_signing_key="k" * 32,
        broker_token_key_id="dev",
        broker_token_ttl_seconds=7200,
    )
    minted = TokenMinter(config).mint("ewms-WF-x-0a1b", "a0123", "WF-x")
    assert jwt.get_unverified_header(minted.token)["kid"] == "dev"
    claims = jwt.decode(minted.token, "k" * 32, algorithms=["HS256"], audience="rabbitmq")
    assert claims["sub"] == "WF-x" and claims["exp"] == minted.expires_at
    assert abs(minted.expires_at - (time.time() + 7200)) < 2
    assert "rabbitmq.configure:ewms-WF-x-0a1b/a0123" in claims["scope"]
    assert "rabbitmq.write:ewms-WF-x-0a1b/amq.default" in claims["scope"]


@pytest.fixture(scope="module")
def trusted_rsa_key(broker: BrokerNode, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An RSA private key file, and its public key (PEM text) which the broker now trusts under kid ``ewms-rs256``.

    The key is added at run time, as a production broker would take it from its config or a JWKS URL.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("keys") / "broker-token.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    broker_node.ctl(broker, "add_uaa_key", "ewms-rs256", f"--pem={public.decode()}")
    return path, public.decode()


async def test_rs256_tokens_work_on_the_broker(broker: BrokerNode, trusted_rsa_key: tuple[Path, str]) -> None:
    private_file, public_pem = trusted_rsa_key
    config = MQSConfig(
        broker_address=broker.address,
        broker_management_url=broker.management_url,
        broker_token_private_key_file=str(private_file),
        broker_token_key_id="ewms-rs256",
    )
    minter = TokenMinter(config)
    assert minter.algorithm == "RS256"
    admin = BrokerAdmin(broker.management_url)
    await admin.create_vhost("ewms-rs256", [], max_queues=1)
    await admin.declare_queues("ewms-rs256", ["a-rs256-queue"])
    token = minter.mint("ewms-rs256", "a-rs256-queue", "WF-rs").token
    assert jwt.decode(token, public_pem, algorithms=["RS256"], audience="rabbitmq")["sub"] == "WF-rs"
    address = f"{broker.address}/ewms-rs256"
    assert pika_roundtrip(address, token, "a-rs256-queue", b"signed by RSA") == b"signed by RSA"
    await admin.delete_vhost("ewms-rs256")
    await admin.close()

    unknown_kid = TokenMinter(
        MQSConfig(
            broker_address=broker.address,
            broker_management_url=broker.management_url,
            broker_token_private_key_file=str(private_file),
            broker_token_key_id="not-registered",
        )
    ).mint("ewms-rs256", "a-rs256-queue", "WF-rs")
    with pytest.raises(pika.exceptions.AMQPConnectionError, match="ACCESS_REFUSED"):
        connect(broker.address, unknown_kid.token)


@pytest.mark.parametrize("content", [None, b"not a key", "ec"])
def test_unusable_private_key_file_is_a_config_error(tmp_path: Path, content: bytes | str | None) -> None:
    path = tmp_path / "key.pem"
    if content == "ec":
        content = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    if isinstance(content, bytes):
        path.write_bytes(content)
    config = MQSConfig(
        broker_address="b:5672", broker_management_url="http://b:15672", broker_token_private_key_file=str(path)
    )
    with pytest.raises(ConfigError, match="BROKER_TOKEN_PRIVATE_KEY_FILE"):
        TokenMinter(config)
