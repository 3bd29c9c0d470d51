"""The TMS (``python -m tms``) with a crash point, for the fault-injection tests: run as ``python
tests/reliability/crashing_tms.py`` with a TMS's environment (``local`` backend). The process exits at once with
``os._exit(137)`` (no cleanup, as after ``kill -9``) right after the backend's first submission returned, before
the starter confirms it to the WMS."""

from __future__ import annotations

import logging
import os

from tms.__main__ import main
from tms.backends.base import JobSpec, Submitted
from tms.backends.local import LocalBackend

LOGGER = logging.getLogger("tms.crash")
submit = LocalBackend.submit


async def submit_then_crash(self: LocalBackend, spec: JobSpec, count: int) -> Submitted:
    """The real submission, then the crash."""
    result = await submit(self, spec, count)
    LOGGER.critical("fault injection: exiting after submitting cluster %d", result.cluster_id)
    os._exit(137)


if __name__ == "__main__":
    LocalBackend.submit = submit_then_crash  # type: ignore[method-assign]
    main()
