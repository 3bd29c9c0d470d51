"""The one error of the WMS client: a refusal carrying the server's RFC 7807 problem details, or an outage."""

from __future__ import annotations

from http import HTTPStatus

import httpx


class WMSError(Exception):
    """The WMS refused a call (``status`` 4xx/5xx, with the problem's ``title``, ``detail`` and ``type``), or could
    not be reached (``status`` None)."""

    def __init__(
        self,
        status: int | None,
        title: str,
        detail: str,
        *,
        type: str = "about:blank",
        errors: list[str] | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.errors = list(errors or [])
        super().__init__(str(self))

    def __str__(self) -> str:
        """``404 Not Found: detail``, then one line per validation message (not repeated in the detail)."""
        detail = self.detail
        joined = "; ".join(self.errors)
        if joined and detail.endswith(joined):
            detail = detail.removesuffix(joined).rstrip(": ") or detail
        head = detail if self.status is None else f"{self.status} {self.title}: {detail}"
        return "\n".join([head, *(f"  - {e}" for e in self.errors)])

    @property
    def is_unavailable(self) -> bool:
        """True for outages worth trying again later (no answer, 429, 5xx); False for refusals (other 4xx)."""
        return self.status is None or self.status == 429 or self.status >= 500

    @classmethod
    def from_response(cls, response: httpx.Response, what: str = "reply") -> WMSError:
        """Build from a problem-details body, or from the status line and text of any other ``what``."""
        status = response.status_code
        phrase = response.reason_phrase or _phrase(status)
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "detail" in body:
            errors = body.get("errors")
            return cls(
                int(body.get("status", status)),
                str(body.get("title", phrase)),
                str(body["detail"]),
                type=str(body.get("type", "about:blank")),
                errors=[str(e) for e in errors] if isinstance(errors, list) else None,
            )
        text = response.text.strip()[:300] or "(empty body)"
        return cls(status, phrase, f"unexpected {what} from {response.request.url}: {text}")

    @classmethod
    def from_transport(cls, exc: httpx.TransportError, where: str, timeout: float | None) -> WMSError:
        """No answer: a timeout, or a failure to connect or to read."""
        if isinstance(exc, httpx.TimeoutException):
            error = cls(None, "Timeout", f"no answer from {where} within {timeout} s ({type(exc).__name__})")
        else:
            error = cls(None, "Unreachable", f"cannot reach {where}: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
