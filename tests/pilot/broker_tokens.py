"""Broker JWTs for pilot tests, signed with the private broker's key (light imports: refresh commands use it too)."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterable

import jwt


def mint_token(key: str, queues: Iterable[str], sub: str = "pilot", ttl: float = 600, vhost: str = "/") -> str:
    """A broker JWT with read/write/configure on each queue, plus publishing through the default exchange."""
    v = urllib.parse.quote(vhost, safe="")
    scopes = []
    for q in queues:
        scopes += [f"rabbitmq.read:{v}/{q}", f"rabbitmq.write:{v}/{q}", f"rabbitmq.configure:{v}/{q}"]
    scopes.append(f"rabbitmq.write:{v}/amq.default")
    claims = {"sub": sub, "aud": "rabbitmq", "exp": round(time.time() + ttl), "scope": " ".join(scopes)}
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": "ewms"})
