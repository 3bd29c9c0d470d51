"""Settings of the Message Queue Service side of the WMS, read from environment variables.

Remote MQS (selected when ``MQS_ADDRESS`` is set):
    MQS_ADDRESS                         base URL of an EWMS-compatible MQS (e.g. ``https://ewms.example.org``)
    MQS_API_VERSION                     route prefix version of that MQS: ``v0`` (default) or ``v1`` (upstream today)
    MQS_TOKEN_URL, MQS_CLIENT_ID,       OAuth2 client-credentials grant used to call the MQS
    MQS_CLIENT_SECRET
    MQS_STATIC_TOKEN                    a fixed bearer token instead of client credentials

Embedded MQS (default): provisions RabbitMQ queues and per-queue tokens itself.
    BROKER_TYPE                         only ``rabbitmq`` (default)
    BROKER_ADDRESS                      ``host:port`` handed to users and pilots in MQ profiles, each with its
                                        workflow's vhost appended (``host:port/vhost``) (required)
    BROKER_MANAGEMENT_URL               ``http[s]://user:pass@host:port`` of the management API, as an account
                                        tagged ``administrator`` that creates and deletes vhosts (required)
    BROKER_RESOURCE_SERVER_ID           the broker's OAuth2 ``resource_server_id``, token ``aud`` (default ``rabbitmq``)
    BROKER_TOKEN_SIGNING_KEY            HS256 secret shared with the broker (dev and tests)
    BROKER_TOKEN_PRIVATE_KEY_FILE       RS256 private key (PEM) whose public key the broker trusts (production)
    BROKER_TOKEN_KEY_ID                 ``kid`` header of minted tokens (default ``ewms``)
    BROKER_TOKEN_TTL_SECONDS            lifetime of a queue token (default 86400)
    BROKER_TOKEN_REFRESH_MARGIN_SECONDS re-mint a token when less than this is left (default 3600)
    MQ_DELETE_GRACE_SECONDS             delay between deactivation and queue deletion (default 600)
    MQS_HOUSEKEEPING_INTERVAL_SECONDS   period of the deletion and token-refresh loop (default 30)
    MQ_MAX_LENGTH                       messages a queue holds before publishes are refused (default 1000000)
    MQ_MAX_LENGTH_BYTES                 bytes of message bodies a queue holds, likewise (default 1073741824)
    MQ_DELIVERY_LIMIT                   deliveries of an event before it is dead-lettered to the workflow's
                                        failed-events queue (default 5)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(ValueError):
    """A setting is missing or malformed."""


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {raw!r}")
    return value


@dataclass(frozen=True)
class MQSConfig:
    """Validated MQS settings; ``remote`` tells which implementation the factory builds."""

    mqs_address: str = ""
    mqs_api_version: str = "v0"
    mqs_token_url: str = ""
    mqs_client_id: str = ""
    mqs_client_secret: str = ""
    mqs_static_token: str = ""
    broker_type: str = "rabbitmq"
    broker_address: str = ""
    broker_management_url: str = ""
    broker_resource_server_id: str = "rabbitmq"
    broker_token_signing_key: str = ""
    broker_token_private_key_file: str = ""
    broker_token_key_id: str = "ewms"
    broker_token_ttl_seconds: float = 86400.0
    broker_token_refresh_margin_seconds: float = 3600.0
    mq_delete_grace_seconds: float = 600.0
    housekeeping_interval_seconds: float = 30.0
    mq_max_length: int = 1_000_000
    mq_max_length_bytes: int = 1 << 30
    mq_delivery_limit: int = 5

    def __post_init__(self) -> None:
        if self.remote:
            self._check_remote()
        else:
            self._check_embedded()

    @property
    def remote(self) -> bool:
        """True when a remote MQS is configured (``MQS_ADDRESS``)."""
        return bool(self.mqs_address)

    def _check_remote(self) -> None:
        if self.mqs_api_version not in ("v0", "v1"):
            raise ConfigError(f"MQS_API_VERSION must be v0 or v1, got {self.mqs_api_version!r}")
        creds = (self.mqs_token_url, self.mqs_client_id, self.mqs_client_secret)
        if any(creds) and not all(creds):
            raise ConfigError("client credentials need all of MQS_TOKEN_URL, MQS_CLIENT_ID, MQS_CLIENT_SECRET")
        if all(creds) and self.mqs_static_token:
            raise ConfigError("set either MQS_STATIC_TOKEN or client credentials, not both")

    def _check_embedded(self) -> None:
        if self.broker_type != "rabbitmq":
            raise ConfigError(f"the embedded MQS supports BROKER_TYPE=rabbitmq only, got {self.broker_type!r}")
        missing = [
            name
            for name, value in (
                ("BROKER_ADDRESS", self.broker_address),
                ("BROKER_MANAGEMENT_URL", self.broker_management_url),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"the embedded MQS needs {', '.join(missing)} (or set MQS_ADDRESS for a remote MQS)")
        if "/" in self.broker_address:
            raise ConfigError(
                f"BROKER_ADDRESS must be host:port, got {self.broker_address!r}: each workflow gets a vhost of its own"
            )
        if not self.broker_management_url.startswith(("http://", "https://")):
            raise ConfigError("BROKER_MANAGEMENT_URL must be the management API's http[s]://USER:PASSWORD@host:port")
        if bool(self.broker_token_signing_key) == bool(self.broker_token_private_key_file):
            raise ConfigError(
                "the embedded MQS needs exactly one of BROKER_TOKEN_SIGNING_KEY (HS256) "
                "or BROKER_TOKEN_PRIVATE_KEY_FILE (RS256)"
            )
        if self.broker_token_ttl_seconds <= self.broker_token_refresh_margin_seconds:
            raise ConfigError("BROKER_TOKEN_TTL_SECONDS must exceed BROKER_TOKEN_REFRESH_MARGIN_SECONDS")
        if self.housekeeping_interval_seconds <= 0:
            raise ConfigError("MQS_HOUSEKEEPING_INTERVAL_SECONDS must be positive")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MQSConfig:
        """Read the variables listed in this module's docstring; unset or empty ones take their defaults."""

        def text(name: str, default: str = "") -> str:
            return env.get(name, "").strip() or default

        return cls(
            mqs_address=text("MQS_ADDRESS"),
            mqs_api_version=text("MQS_API_VERSION", "v0"),
            mqs_token_url=text("MQS_TOKEN_URL"),
            mqs_client_id=text("MQS_CLIENT_ID"),
            mqs_client_secret=text("MQS_CLIENT_SECRET"),
            mqs_static_token=text("MQS_STATIC_TOKEN"),
            broker_type=text("BROKER_TYPE", "rabbitmq"),
            broker_address=text("BROKER_ADDRESS"),
            broker_management_url=text("BROKER_MANAGEMENT_URL"),
            broker_resource_server_id=text("BROKER_RESOURCE_SERVER_ID", "rabbitmq"),
            broker_token_signing_key=text("BROKER_TOKEN_SIGNING_KEY"),
            broker_token_private_key_file=text("BROKER_TOKEN_PRIVATE_KEY_FILE"),
            broker_token_key_id=text("BROKER_TOKEN_KEY_ID", "ewms"),
            broker_token_ttl_seconds=_float(env, "BROKER_TOKEN_TTL_SECONDS", 86400.0),
            broker_token_refresh_margin_seconds=_float(env, "BROKER_TOKEN_REFRESH_MARGIN_SECONDS", 3600.0),
            mq_delete_grace_seconds=_float(env, "MQ_DELETE_GRACE_SECONDS", 600.0),
            housekeeping_interval_seconds=_float(env, "MQS_HOUSEKEEPING_INTERVAL_SECONDS", 30.0),
            mq_max_length=_count(env, "MQ_MAX_LENGTH", 1_000_000),
            mq_max_length_bytes=_count(env, "MQ_MAX_LENGTH_BYTES", 1 << 30),
            mq_delivery_limit=_count(env, "MQ_DELIVERY_LIMIT", 5),
        )
