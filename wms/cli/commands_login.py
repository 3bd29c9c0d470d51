"""``ewms login`` and ``ewms logout``: sign in with the OAuth2 device flow; the CLI then uses the saved token
(refreshed as needed) whenever no token is given by ``--token``, ``EWMS_TOKEN`` or the config file."""

from __future__ import annotations

import argparse

import httpx

from ewms_client.device_login import LoginError, Provider, device_login
from wms.cli.exits import CLIError, Exit
from wms.cli.output import note
from wms.cli.settings import HTTP_TIMEOUT, environment, login_path, read_config

# the provider's settings: flag, environment variable, config file key
PROVIDER_SETTINGS = {
    "issuer": ("EWMS_OIDC_ISSUER", "oidc_issuer"),
    "device_endpoint": ("EWMS_OIDC_DEVICE_ENDPOINT", "device_authorization_endpoint"),
    "token_endpoint": ("EWMS_OIDC_TOKEN_ENDPOINT", "token_endpoint"),
    "client_id": ("EWMS_OIDC_CLIENT_ID", "client_id"),
    "scope": ("EWMS_OIDC_SCOPE", "scope"),
}
DEFAULT_SCOPE = "openid offline_access"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``login`` and ``logout``."""
    p = subparsers.add_parser(
        "login",
        help="sign in with your identity provider (OAuth2 device flow)",
        description="Sign in with the OAuth2 device flow (RFC 8628): open the address shown, enter the code, approve. "
        "The tokens are saved (mode 0600) beside the config file and refreshed with the refresh token; commands use "
        "them when no --token, EWMS_TOKEN or config-file token is given. The provider is named by its OIDC issuer "
        "(discovery) or by both endpoints; each setting also comes from its environment variable or config key.",
    )
    for name, (env, key) in PROVIDER_SETTINGS.items():
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, dest=f"oidc_{name}", metavar="VALUE", help=f"env {env}, config key {key!r}")
    p.set_defaults(handler=login)

    p = subparsers.add_parser("logout", help="forget the sign-in saved by `ewms login`")
    p.set_defaults(handler=logout)


def _setting(args: argparse.Namespace, name: str) -> str | None:
    key = PROVIDER_SETTINGS[name][1]
    value = getattr(args, f"oidc_{name}") or getattr(environment(), f"oidc_{name}") or read_config().get(key)
    return str(value) if value else None


def _show(uri: str, code: str, complete: str | None) -> None:
    note(f"To sign in, open {uri} and enter the code {code}")
    if complete:
        note(f"(or open {complete})")
    note("waiting for the approval...")


async def login(args: argparse.Namespace) -> int:
    """Run the device flow and save the tokens."""
    client_id = _setting(args, "client_id")
    if not client_id:
        raise CLIError("no OAuth2 client id: pass --client-id, set EWMS_OIDC_CLIENT_ID or put client_id in the config "
                       "file", Exit.USAGE)  # fmt: skip
    scope = _setting(args, "scope") or DEFAULT_SCOPE
    issuer, device, token = (_setting(args, n) for n in ("issuer", "device_endpoint", "token_endpoint"))
    path = login_path()
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
            if device and token:
                provider = Provider(device, token, client_id, scope)
            elif issuer:
                provider = await Provider.discover(http, issuer, client_id, scope)
            else:
                raise CLIError(
                    "no identity provider: pass --issuer (OIDC discovery) or both --device-endpoint and "
                    "--token-endpoint (or their EWMS_OIDC_* variables or config keys)",
                    Exit.USAGE,
                )
            await device_login(http, provider, path, _show)
    except LoginError as exc:
        raise CLIError(str(exc), Exit.API_ERROR) from exc
    except httpx.TransportError as exc:
        raise CLIError(f"cannot reach the identity provider: {type(exc).__name__}: {exc}", Exit.UNAVAILABLE) from exc
    print(f"signed in; tokens saved to {path}")
    return Exit.OK


async def logout(args: argparse.Namespace) -> int:
    """Delete the saved tokens."""
    path = login_path()
    try:
        path.unlink()
    except FileNotFoundError:
        print("not signed in")
        return Exit.OK
    print(f"signed out ({path} deleted)")
    return Exit.OK
