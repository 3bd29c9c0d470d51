"""Pilot credentials: WMS-issued JWTs (role ``pilot``, a ``workflow_id`` claim) with which a pilot renews the tokens
of its workflow's queues (``POST /v0/mqs/workflows/{workflow_id}/queues/{queue}/token``).

They are signed HS256 with ``PILOT_CREDENTIAL_SIGNING_KEY`` (default ``AUTH_SIGNING_KEY``) for the audience
:data:`AUDIENCE`, which no user token carries: a pilot credential is accepted by that route only, and user tokens
are never accepted there. One is handed to the TMS with each pending-starter taskforce; it lives the taskforce's
``max_worker_runtime`` plus ``PILOT_CREDENTIAL_MARGIN_SECONDS`` (the time its jobs may wait in the scheduler).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from wms.auth import AuthError, Role, issue_token
from wms.config import WMSConfig

AUDIENCE = "ewms-pilot"
SUBJECT_PREFIX = "pilot:"


@dataclass(frozen=True)
class PilotCaller:
    """The holder of a valid pilot credential."""

    workflow_id: str


def issue(config: WMSConfig, workflow_id: str, worker_config: Mapping[str, Any]) -> str | None:
    """A credential for the pilots of one taskforce of ``workflow_id``; None when no key is configured."""
    if not config.pilot_key:
        return None
    ttl = float(worker_config.get("max_worker_runtime") or 0) + config.pilot_credential_margin_seconds
    return issue_token(
        config.pilot_key, f"{SUBJECT_PREFIX}{workflow_id}", Role.PILOT, AUDIENCE, ttl=ttl, workflow_id=workflow_id
    )


def verify(config: WMSConfig, authorization: str | None) -> PilotCaller:
    """The pilot presenting ``Authorization: Bearer <credential>``; raises AuthError."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("authorization header must be 'Bearer <pilot credential>'")
    if not config.pilot_key:
        raise AuthError("this WMS issues no pilot credentials (no PILOT_CREDENTIAL_SIGNING_KEY or AUTH_SIGNING_KEY)")
    try:
        claims = jwt.decode(
            token.strip(),
            config.pilot_key,
            algorithms=["HS256"],
            audience=AUDIENCE,
            options={"require": ["exp", "sub", "workflow_id"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("pilot credential expired") from exc
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid pilot credential: {exc}") from exc
    if claims.get("ewms_role") != str(Role.PILOT) or not isinstance(claims["workflow_id"], str):
        raise AuthError("not a pilot credential")
    return PilotCaller(workflow_id=claims["workflow_id"])
