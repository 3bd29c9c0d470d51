"""Where the WMS is and which token to use: ``--url``/``--token``, else ``EWMS_URL``/``EWMS_TOKEN``, else the
config file (``$EWMS_CONFIG`` or ``~/.config/ewms/config.json``, ``{"url": ..., "token": ...}``), else for the token
the sign-in saved by ``ewms login`` (``login.json`` beside the config file).

The CLI's environment variables are declared once, on :class:`CLIEnvironment` (table: Docs/settings/cli.md).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ewms_client import TokenSource, WMSClient
from ewms_client.device_login import SavedLogin
from ewms_settings import ConfigError, load, setting
from wms.cli.exits import CLIError, Exit

HTTP_TIMEOUT = 30.0
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class CLIEnvironment:
    """The ``ewms`` command's environment variables (a flag given on the command line wins over each)."""

    url: str | None = setting("EWMS_URL", "WMS address, e.g. `http://localhost:8080` (`--url`)", None)
    token: str | None = setting("EWMS_TOKEN", "bearer token for the WMS (`--token`)", None, secret=True)
    config: Path | None = setting(
        "EWMS_CONFIG",
        'config file holding `{"url": ..., "token": ...}` and the sign-in settings',
        None,
        default_doc="`~/.config/ewms/config.json`",
    )
    log_level: str = setting(
        "EWMS_LOG_LEVEL", "what the CLI logs to stderr (retries are warnings)", "WARNING", parse=str.upper,
        choices=LOG_LEVELS,
    )  # fmt: skip
    oidc_issuer: str | None = setting(
        "EWMS_OIDC_ISSUER", "`ewms login`: the identity provider's issuer URL (OIDC discovery)", None
    )
    oidc_device_endpoint: str | None = setting(
        "EWMS_OIDC_DEVICE_ENDPOINT", "`ewms login`: device authorization endpoint (instead of the issuer)", None
    )
    oidc_token_endpoint: str | None = setting(
        "EWMS_OIDC_TOKEN_ENDPOINT", "`ewms login`: token endpoint (with the device endpoint)", None
    )
    oidc_client_id: str | None = setting("EWMS_OIDC_CLIENT_ID", "`ewms login`: the CLI's OAuth2 client id", None)
    oidc_scope: str | None = setting(
        "EWMS_OIDC_SCOPE", "`ewms login`: scopes asked for", None, default_doc="`openid offline_access`"
    )


def environment() -> CLIEnvironment:
    """The CLI's settings from the environment; an invalid one is a usage error."""
    try:
        return load(CLIEnvironment, os.environ)
    except ConfigError as exc:
        raise CLIError(str(exc), Exit.USAGE) from exc


@dataclass(frozen=True)
class Settings:
    """The resolved WMS address and token."""

    url: str
    token: str | TokenSource


def add_connection_options(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """Add ``--url`` and ``--token``; on sub-commands they only override what was given before the command."""
    default = None if top_level else argparse.SUPPRESS
    parser.add_argument("--url", default=default, help="WMS address, e.g. http://localhost:8080 (env EWMS_URL)")
    parser.add_argument("--token", default=default, help="bearer token (env EWMS_TOKEN)")


def config_path() -> Path:
    """The config file: ``$EWMS_CONFIG`` or ``~/.config/ewms/config.json``."""
    return environment().config or Path.home() / ".config" / "ewms" / "config.json"


def login_path() -> Path:
    """Where ``ewms login`` saves its tokens: ``login.json`` beside the config file."""
    return config_path().with_name("login.json")


def read_config() -> dict[str, Any]:
    """The config file's settings ({} when it does not exist)."""
    return _read_config(config_path())


def _read_config(path: Path) -> dict[str, Any]:
    """The config file's settings ({} when it does not exist)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot read config file {path}: {exc}", Exit.USAGE) from exc
    if not isinstance(data, dict):
        raise CLIError(f'config file {path} must hold a JSON object like {{"url": ..., "token": ...}}', Exit.USAGE)
    return data


def resolve(args: argparse.Namespace) -> Settings:
    """Flags, then environment, then config file; a missing value is a usage error with a hint."""
    env = environment()
    url, token = args.url or env.url, args.token or env.token
    if not (url and token):
        path = config_path()
        config = _read_config(path)
        url, token = url or config.get("url"), token or config.get("token")
        if not url:
            raise CLIError(f'no WMS URL: pass --url, set EWMS_URL, or put "url" in {path}', Exit.USAGE)
        if not token:
            login = SavedLogin.load(login_path())
            if login is None:
                raise CLIError(
                    f'no WMS token: pass --token, set EWMS_TOKEN, put "token" in {path}, or run `ewms login`',
                    Exit.USAGE,
                )
            return Settings(url=check_url(str(url)), token=login)
    return Settings(url=check_url(str(url)), token=str(token))


def is_local(url: str) -> bool:
    """Whether ``url`` points at this machine (where ``ewms dev up`` runs a stack)."""
    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL:
        return False
    return host in ("localhost", "::1") or host.startswith("127.")


def check_url(url: str) -> str:
    """``url`` if it is an http(s) address with a host."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise CLIError(f"invalid WMS URL {url!r}: {exc}", Exit.USAGE) from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise CLIError(f"invalid WMS URL {url!r}: expected http(s)://HOST[:PORT]", Exit.USAGE)
    return url


def connect(args: argparse.Namespace) -> WMSClient:
    """A client for the resolved settings (use it with ``async with``)."""
    settings = resolve(args)
    return WMSClient(settings.url, settings.token, timeout=HTTP_TIMEOUT)
