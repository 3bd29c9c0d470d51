"""Fresh queue tokens, so that a pilot outlives its tokens (``EWMS_PILOT_QUEUE_TOKEN_REFRESH_*``).

A token's expiry is read from its ``exp`` claim (unverified: the broker verifies it). A link renews its token when half
of the time it had left when it got it has passed, and before (re)connecting when it is already that close to
expiry (a job may wait in the scheduler's queue longer than a token lives). Where fresh tokens come from:

- a command (``EWMS_PILOT_QUEUE_TOKEN_REFRESH_COMMAND``, shell syntax, run without a shell): run with the queue name
  as its last argument, it prints the fresh token on stdout.
- a URL (``EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL``, ``{queue}`` replaced by the percent-encoded queue name): ``POST``
  with ``Authorization: Bearer <EWMS_PILOT_QUEUE_TOKEN_REFRESH_CREDENTIAL>``; the answer is JSON with the fresh
  token in ``auth_token``.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import time
import urllib.parse
import urllib.request
from typing import Protocol

import jwt

from pilot.config import PilotConfig

SOURCE_TIMEOUT = 30.0
RENEW_AT = 0.5  # of the time left when the token was obtained


class TokenSourceError(Exception):
    """A fresh token could not be obtained."""


class TokenSource(Protocol):
    """Gives a fresh token for a queue."""

    async def fresh_token(self, queue: str) -> str:
        """A fresh token for ``queue``; raise :class:`TokenSourceError` on failure."""


def token_expiry(token: str) -> float | None:
    """The token's ``exp`` claim (epoch seconds), or ``None`` when it is not a JWT with one."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None


def renewal_time(token: str, now: float) -> float | None:
    """When to renew ``token`` obtained at ``now`` (epoch seconds); ``None`` when it never expires."""
    expiry = token_expiry(token)
    if expiry is None:
        return None
    return now + max(0.0, expiry - now) * RENEW_AT


class CommandTokenSource:
    """Runs a command that prints a fresh token."""

    def __init__(self, command: str) -> None:
        self.argv = shlex.split(command)

    def __str__(self) -> str:
        return f"command {shlex.join(self.argv)}"

    async def fresh_token(self, queue: str) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, queue, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise TokenSourceError(f"cannot run {self}: {exc}") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), SOURCE_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise TokenSourceError(f"{self} did not answer within {SOURCE_TIMEOUT:g}s") from None
        token = out.decode(errors="replace").strip()
        if proc.returncode != 0 or not token:
            detail = err.decode(errors="replace").strip()[-300:]
            raise TokenSourceError(f"{self} failed (exit code {proc.returncode}, no token): {detail}")
        return token


class UrlTokenSource:
    """Asks an HTTP(S) route for a fresh token, with the pilot's own credential."""

    def __init__(self, url: str, credential: str) -> None:
        self.url = url
        self._credential = credential

    def __str__(self) -> str:
        return f"URL {self.url}"

    async def fresh_token(self, queue: str) -> str:
        url = self.url.replace("{queue}", urllib.parse.quote(queue, safe=""))
        return await asyncio.to_thread(self._post, url)

    def _post(self, url: str) -> str:
        headers = {"Authorization": f"Bearer {self._credential}"}
        request = urllib.request.Request(url, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=SOURCE_TIMEOUT) as response:
                answer = json.loads(response.read())
        except (OSError, ValueError) as exc:  # URLError/HTTPError are OSErrors; bad JSON is a ValueError
            raise TokenSourceError(f"POST {url}: {exc}") from exc
        token = answer.get("auth_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenSourceError(f"POST {url}: the answer has no 'auth_token'")
        return token


def make_token_source(config: PilotConfig) -> TokenSource | None:
    """The source the configuration names, if any."""
    if config.token_refresh_command:
        return CommandTokenSource(config.token_refresh_command)
    if config.token_refresh_url:
        return UrlTokenSource(config.token_refresh_url, config.token_refresh_credential)
    return None


def seconds_left(token: str) -> float | None:
    """Seconds until ``token`` expires (negative once expired); ``None`` when it never does."""
    expiry = token_expiry(token)
    return None if expiry is None else expiry - time.time()
