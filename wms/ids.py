"""Identifiers in the upstream EWMS formats (``WF-``, ``TK-``, ``TF-`` + hex epoch + random hex)."""

from __future__ import annotations

import secrets
import time


def _make(prefix: str, n_random: int) -> str:
    parts = [prefix, f"{int(time.time()):x}"] + [secrets.token_hex(4) for _ in range(n_random)]
    return "-".join(parts)


def workflow_id() -> str:
    """A new ``WF-<hex epoch>-<8 hex>`` id."""
    return _make("WF", 1)


def task_id() -> str:
    """A new ``TK-<hex epoch>-<8 hex>-<8 hex>`` id."""
    return _make("TK", 2)


def taskforce_uuid() -> str:
    """A new ``TF-<hex epoch>-<8 hex>-<8 hex>-<8 hex>`` id."""
    return _make("TF", 3)
