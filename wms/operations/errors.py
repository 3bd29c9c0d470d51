"""Why an operation was refused: the HTTP status that says so and a one-line detail (handlers answer it as RFC 7807)."""

from __future__ import annotations

from typing import Any

from wms.auth import Caller


class OperationError(Exception):
    """An operation refused, with the status and detail the caller is answered with."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def found(doc: dict[str, Any] | None, what: str, key: str, caller: Caller) -> dict[str, Any]:
    """The document, after a 404 when it is missing or the caller may not see it: another user's object is answered
    exactly as a missing one, so that ids cannot be probed."""
    if doc is None or not caller.may_access_owner(doc.get("owner")):
        raise OperationError(404, f"no {what} found with {key}")
    return doc
