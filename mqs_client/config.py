"""Settings of the Message Queue Service side of the WMS, read from environment variables.

A remote MQS is used when ``MQS_ADDRESS`` is set; else the embedded MQS provisions RabbitMQ queues and per-queue
tokens itself. Every variable is declared once below (table: Docs/settings/mqs.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ewms_settings import ConfigError as ConfigError  # re-exported: the one settings error
from ewms_settings import load, setting


@dataclass(frozen=True)
class MQSConfig:
    """Validated MQS settings; ``remote`` tells which implementation the factory builds."""

    mqs_address: str = setting(
        "MQS_ADDRESS",
        "base URL of an EWMS-compatible MQS, e.g. `https://ewms.example.org`; setting it selects the remote client",
        "",
    )
    mqs_api_version: str = setting(
        "MQS_API_VERSION",
        "remote MQS: route prefix `/{version}/mqs/...`, `v0` or `v1` (upstream EWMS serves `v1`)",
        "v0",
    )
    mqs_token_url: str = setting(
        "MQS_TOKEN_URL", "remote MQS: OAuth2 token endpoint for the client-credentials grant", ""
    )
    mqs_client_id: str = setting(
        "MQS_CLIENT_ID", "remote MQS: the WMS's client id (the three credentials: all or none)", ""
    )
    mqs_client_secret: str = setting("MQS_CLIENT_SECRET", "remote MQS: the WMS's client secret", "", secret=True)
    mqs_static_token: str = setting(
        "MQS_STATIC_TOKEN", "remote MQS: a fixed bearer token instead of client credentials", "", secret=True
    )
    broker_type: str = setting("BROKER_TYPE", "embedded MQS: the broker it provisions, only `rabbitmq`", "rabbitmq")
    broker_address: str = setting(
        "BROKER_ADDRESS",
        "embedded MQS (required): `host:port` put in every MQ profile with the workflow's vhost appended"
        " (`host:port/vhost`), what users and pilots connect to (no scheme: oms-mqclient 2.7 passes the parts to pika)",
        "",
    )
    broker_management_url: str = setting(
        "BROKER_MANAGEMENT_URL",
        "embedded MQS (required): `http[s]://USER:PASSWORD@host:port` of the management API, as an account tagged"
        " `administrator` that creates and deletes each workflow's vhost",
        "",
        secret=True,
    )
    broker_resource_server_id: str = setting(
        "BROKER_RESOURCE_SERVER_ID",
        "the broker's OAuth2 `resource_server_id`: token `aud` and scope prefix",
        "rabbitmq",
    )
    broker_token_signing_key: str = setting(
        "BROKER_TOKEN_SIGNING_KEY", "HS256 secret shared with the broker (dev stack, tests)", "", secret=True
    )
    broker_token_private_key_file: str = setting(
        "BROKER_TOKEN_PRIVATE_KEY_FILE",
        "PEM RSA private key; tokens are signed RS256 (production). Exactly one of the two key settings",
        "",
    )
    broker_token_key_id: str = setting(
        "BROKER_TOKEN_KEY_ID", "`kid` header of every token; the broker looks the key up by it", "ewms"
    )
    broker_token_ttl_seconds: float = setting("BROKER_TOKEN_TTL_SECONDS", "lifetime of a queue token", 86400.0, ge=0)
    broker_token_refresh_margin_seconds: float = setting(
        "BROKER_TOKEN_REFRESH_MARGIN_SECONDS",
        "a token with less life left is re-minted (must be below the TTL)",
        3600.0,
        ge=0,
    )
    mq_delete_grace_seconds: float = setting(
        "MQ_DELETE_GRACE_SECONDS", "time between deactivation and queue deletion", 600.0, ge=0
    )
    housekeeping_interval_seconds: float = setting(
        "MQS_HOUSEKEEPING_INTERVAL_SECONDS",
        "period of the housekeeping pass (queue deletion, token refresh)",
        30.0,
        gt=0,
    )
    mq_max_length: int = setting(
        "MQ_MAX_LENGTH", "messages a queue holds; past it publishes are refused (nacked)", 1_000_000, ge=1
    )
    mq_max_length_bytes: int = setting(
        "MQ_MAX_LENGTH_BYTES", "bytes of message bodies a queue holds (1 GiB), likewise", 1 << 30, ge=1
    )
    mq_delivery_limit: int = setting(
        "MQ_DELIVERY_LIMIT",
        "deliveries of an event to consumers that did not acknowledge it before the broker dead-letters it to the"
        " workflow's failed-events queue",
        5,
        ge=1,
    )

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

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MQSConfig:
        """Read the settings declared above; unset or blank ones take their defaults."""
        return load(cls, env)
