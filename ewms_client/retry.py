"""The retry policy of every WMS call: which failures are tried again, and the bounded back-off between tries."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({502, 503, 504})  # the gateway or the WMS is away: an idempotent request may go again
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # the request never left


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``retries`` more attempts, ``first_delay`` doubling up to ``max_delay`` seconds in between, or longer
    when the server asks (``Retry-After``, honoured up to ``max_retry_after``).

    Retried: a request that never left (no connection) and a 429 (refused unprocessed), whatever the method; for an
    idempotent request also a dropped connection and 502/503/504. Never retried: a timeout waiting for an answer
    (the server has the request and is slow: do not pile on) and every other answer.
    """

    retries: int = 3
    first_delay: float = 0.25
    max_delay: float = 8.0
    max_retry_after: float = 30.0

    def retries_status(self, status: int, idempotent: bool) -> bool:
        """Whether an answer with ``status`` is worth another attempt."""
        return status == 429 or (idempotent and status in RETRY_STATUSES)

    def retries_failure(self, exc: httpx.TransportError, idempotent: bool) -> bool:
        """Whether a request that got no answer is worth another attempt."""
        if isinstance(exc, NOT_SENT):
            return True
        return idempotent and not isinstance(exc, httpx.TimeoutException)

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first)."""
        backoff = min(self.first_delay * 2**attempt, self.max_delay)
        try:
            asked = float(retry_after) if retry_after else 0.0
        except ValueError:  # an HTTP date: not sent by the WMS, the back-off will do
            asked = 0.0
        return max(backoff, min(asked, self.max_retry_after))
