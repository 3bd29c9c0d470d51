"""Per-queue JWTs in the form RabbitMQ's OAuth2 backend accepts as an AMQP password.

A token grants read, write and configure on one queue of one vhost (its workflow's), plus write on that vhost's
default exchange (``amq.default``) that publishers such as oms-mqclient send through. It is signed HS256 with a
shared secret (dev, tests) or RS256 with a private key whose public half the broker trusts (production).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from .config import ConfigError, MQSConfig


@dataclass(frozen=True)
class QueueToken:
    """A minted token and when it expires (epoch seconds)."""

    token: str
    expires_at: float


def queue_scopes(resource_server_id: str, vhost: str, queue: str) -> str:
    """The ``scope`` claim for one queue: vhost ``/`` is written ``%2F``."""
    prefix, where = resource_server_id, quote(vhost, safe="")
    return " ".join(
        [
            f"{prefix}.read:{where}/{queue}",
            f"{prefix}.write:{where}/{queue}",
            f"{prefix}.configure:{where}/{queue}",
            f"{prefix}.write:{where}/amq.default",
        ]
    )


def _load_rsa_key(path: str) -> RSAPrivateKey:
    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"BROKER_TOKEN_PRIVATE_KEY_FILE {path}: not a readable, unencrypted PEM key ({exc})") from exc
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError(f"BROKER_TOKEN_PRIVATE_KEY_FILE {path}: RS256 needs an RSA key, got {type(key).__name__}")
    return key


class TokenMinter:
    """Signs queue tokens with the key the configuration names."""

    def __init__(self, config: MQSConfig) -> None:
        self.resource_server_id = config.broker_resource_server_id
        self.key_id = config.broker_token_key_id
        self.ttl = config.broker_token_ttl_seconds
        self._key: str | RSAPrivateKey
        if config.broker_token_private_key_file:
            self._key, self.algorithm = _load_rsa_key(config.broker_token_private_key_file), "RS256"
        else:
            self._key, self.algorithm = config.broker_token_signing_key, "HS256"

    def mint(self, vhost: str, queue: str, subject: str) -> QueueToken:
        """A token for ``queue`` in ``vhost`` naming ``subject`` (the broker shows it as the connection's user)."""
        now = time.time()
        expires_at = math.ceil(now + self.ttl)  # whole seconds, never shorter than the TTL
        claims = {
            "sub": subject,
            "aud": self.resource_server_id,
            "iat": int(now),
            "exp": expires_at,
            "scope": queue_scopes(self.resource_server_id, vhost, queue),
        }
        token = jwt.encode(claims, self._key, algorithm=self.algorithm, headers={"kid": self.key_id})
        return QueueToken(token, float(expires_at))
