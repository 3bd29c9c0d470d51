"""Bearer-token authentication for the WMS: JWT validation, role mapping and (for dev and tests) token issuing.

Tokens must carry ``exp``, ``sub``, the configured audience and, when an issuer is configured (``AUTH_ISSUER``, or
the OpenID provider's own), that ``iss``. Roles come from the ``ewms_role`` claim (``user``, ``system-tms``,
``admin``) or, for users, from a ``groups`` claim matching a configured pattern. Production validates RS256 tokens
from an OpenID provider's JWKS; the dev stack and tests use a local HS256 signing key and :func:`issue_token`.
"""

from __future__ import annotations

import enum
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

CACHE_SIZE = 4096  # validated tokens remembered (least recently used dropped first)
CACHE_SECONDS = 300.0  # longest a validation is reused, as long as the JWKS keys are cached


class Role(enum.StrEnum):
    """Roles a caller can hold."""

    USER = "user"
    TMS = "system-tms"
    ADMIN = "admin"
    PILOT = "pilot"  # a pilot's credential (``wms.pilot_credentials``): renews the queue tokens of one workflow


class AuthError(Exception):
    """The token is missing or invalid (HTTP 401)."""


class ForbiddenError(Exception):
    """The token is valid but its roles do not allow the action (HTTP 403)."""


@dataclass(frozen=True)
class Caller:
    """Who made a request."""

    subject: str
    roles: frozenset[Role]

    @property
    def is_admin(self) -> bool:
        """Admins may read and act on every workflow."""
        return Role.ADMIN in self.roles

    def may_access_owner(self, owner: str | None) -> bool:
        """True when this caller may see or act on an object owned by ``owner``."""
        return self.is_admin or Role.TMS in self.roles or owner == self.subject


class TokenValidator:
    """Validates bearer tokens and maps their claims to roles.

    A token that validated is remembered, with its caller, until it expires or for ``CACHE_SECONDS``, whichever
    comes first: a client repeating its token skips the signature check (a fifth of the cost of a simple GET).
    """

    def __init__(
        self,
        audience: str,
        signing_key: str = "",
        openid_url: str = "",
        user_group_pattern: str = "",
        leeway: float = 0.0,
        issuer: str = "",
    ) -> None:
        if not signing_key and not openid_url:
            raise ValueError("auth needs AUTH_SIGNING_KEY (dev/tests) or AUTH_OPENID_URL (production)")
        self.audience = audience
        self.signing_key = signing_key
        self.leeway = leeway
        self.issuer = issuer
        self._group_re = re.compile(user_group_pattern) if user_group_pattern else None
        self._jwks: jwt.PyJWKClient | None = None
        self._validated: OrderedDict[str, tuple[Caller, float]] = OrderedDict()
        if openid_url:
            provider = _discover(openid_url)
            self._jwks = jwt.PyJWKClient(str(provider["jwks_uri"]), cache_keys=True, lifespan=300)
            self.issuer = issuer or str(provider.get("issuer") or "")

    def _decode(self, token: str) -> dict[str, Any]:
        if self._jwks is not None and not self.signing_key:
            key = self._jwks.get_signing_key_from_jwt(token).key
            algorithms = ["RS256", "RS384", "RS512", "ES256"]
        else:
            key, algorithms = self.signing_key, ["HS256"]
        return jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=self.audience,
            issuer=self.issuer or None,
            options={"require": ["exp", "sub", "iss"] if self.issuer else ["exp", "sub"]},
            leeway=self.leeway,
        )

    def authenticate(self, authorization: str | None) -> Caller:
        """Turn an ``Authorization`` header into a caller; raises AuthError."""
        if not authorization:
            raise AuthError("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("authorization header must be 'Bearer <token>'")
        token = token.strip()
        now = time.time()
        if (hit := self._validated.get(token)) is not None:
            if now < hit[1]:
                self._validated.move_to_end(token)
                return hit[0]
            del self._validated[token]
        try:
            claims = self._decode(token)
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("token audience not accepted") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("token issuer not accepted") from exc
        except (jwt.PyJWTError, ValueError) as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        caller = Caller(subject=str(claims["sub"]), roles=self._roles(claims))
        self._validated[token] = (caller, min(float(claims["exp"]) + self.leeway, now + CACHE_SECONDS))
        if len(self._validated) > CACHE_SIZE:
            self._validated.popitem(last=False)
        return caller

    def _roles(self, claims: dict[str, Any]) -> frozenset[Role]:
        roles: set[Role] = set()
        claimed = claims.get("ewms_role")
        for value in claimed if isinstance(claimed, list) else [claimed]:
            if isinstance(value, str) and value in Role._value2member_map_:
                roles.add(Role(value))
        groups = claims.get("groups") or []
        if self._group_re and isinstance(groups, list) and any(self._group_re.match(str(g)) for g in groups):
            roles.add(Role.USER)
        return frozenset(roles)


def _discover(openid_url: str) -> dict[str, Any]:
    """An OpenID provider's discovery document (its ``jwks_uri`` and ``issuer``)."""
    import json
    import urllib.request

    base = openid_url.rstrip("/")
    with urllib.request.urlopen(f"{base}/.well-known/openid-configuration", timeout=10) as resp:
        document = json.load(resp)
    if not isinstance(document, dict) or "jwks_uri" not in document:
        raise ValueError(f"{base} publishes no jwks_uri in its OpenID configuration")
    return document


def issue_token(
    signing_key: str, subject: str, role: Role | str, audience: str, ttl: float = 86400.0, **extra: Any
) -> str:
    """Mint an HS256 token (dev stack and tests only; production tokens come from the OpenID provider)."""
    now = int(time.time())
    claims = {"sub": subject, "aud": audience, "iat": now, "exp": now + int(ttl), "ewms_role": str(role), **extra}
    return jwt.encode(claims, signing_key, algorithm="HS256")
