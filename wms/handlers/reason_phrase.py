"""The HTTP reason phrase of an error answer: the problem's detail, as upstream EWMS sends it.

Ecosystem clients (wipac-rest-tools' ``RestClient``, ``requests``' ``raise_for_status``) show the reason phrase, not
the body. A status line holds one line of ASCII, so the detail is flattened: control characters (CR/LF included)
become spaces, other non-ASCII characters backslash escapes, and the result is capped in length.
"""

from __future__ import annotations

import re

MAX_LENGTH = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def reason_phrase(detail: str, fallback: str) -> str:
    """``detail`` made fit for a status line (``fallback``, the status's standard phrase, when it is empty)."""
    text = _CONTROL.sub(" ", detail)
    text = " ".join(text.encode("ascii", "backslashreplace").decode("ascii").split())
    if len(text) > MAX_LENGTH:
        text = text[: MAX_LENGTH - 3].rstrip() + "..."
    return text or fallback
