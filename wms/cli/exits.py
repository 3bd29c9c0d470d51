"""Exit codes of ``ewms`` and the error that carries one."""

from __future__ import annotations

import enum

from ewms_client import WMSError


class Exit(enum.IntEnum):
    """Process exit codes (documented in Docs/cli.md and ``ewms --help``)."""

    OK = 0
    API_ERROR = 1  # the WMS refused the request (4xx)
    USAGE = 2  # bad arguments, input file or configuration
    UNAVAILABLE = 3  # the WMS or the broker is unreachable, or a 5xx answer
    TIMEOUT = 4  # gave up waiting (queues, events, taskforces)
    INTERRUPTED = 130  # Ctrl-C


EPILOG = """\
exit codes:
  0    success
  1    the WMS refused the request (4xx: not found, invalid, forbidden ...)
  2    usage or configuration error (bad arguments, unreadable file, no URL or token)
  3    the WMS or the broker is unavailable (network error, 5xx)
  4    timed out waiting (queues, events, taskforces)
  130  interrupted (Ctrl-C)
"""


class CLIError(Exception):
    """A failure to report on stderr as ``error: <message>`` with exit ``code``."""

    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(message)
        self.code = code


def exit_code_for(error: WMSError) -> Exit:
    """4xx -> 1, unreachable or 5xx -> 3."""
    return Exit.UNAVAILABLE if error.is_unavailable else Exit.API_ERROR
