"""Entry point: ``python -m pilot`` or the ``ewms-pilot`` console script; configured only by the environment."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

import uvloop

from ewms_wire.chirp import PilotStatus
from pilot.config import load_config, load_reporting_config
from pilot.errors import ConfigError
from pilot.pilot import Pilot
from pilot.reporting import StatusReporter, make_sinks
from pilot.runners import make_runner

LOGGER = logging.getLogger("pilot")
THIRD_PARTY_LOGGERS = ("pika", "htchirp", "asyncio")


def configure_logging(environ: Mapping[str, str]) -> None:
    """Log to stderr at ``EWMS_PILOT_CL_LOG`` (third-party libraries at ``EWMS_PILOT_CL_LOG_THIRD_PARTY``)."""
    levels = logging.getLevelNamesMapping()
    level = environ.get("EWMS_PILOT_CL_LOG", "INFO").upper()
    third_party = environ.get("EWMS_PILOT_CL_LOG_THIRD_PARTY", "WARNING").upper()
    logging.basicConfig(
        level=level if level in levels else "INFO",
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
        stream=sys.stderr,
    )
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(third_party if third_party in levels else "WARNING")


def main() -> int:
    """Run one pilot; return 0 when it ends ``Done``, non-zero after a ``FatalError``."""
    configure_logging(os.environ)
    try:
        reporting = load_reporting_config(os.environ)
    except ConfigError as exc:
        LOGGER.error("%s", exc)
        return 1
    reporter = StatusReporter(make_sinks(reporting), reporting.ratelimit_interval)
    try:
        config = load_config(os.environ)
    except ConfigError as exc:
        reporter.set_status(PilotStatus.STARTED)
        reporter.fatal(str(exc))
        return 1
    return uvloop.run(Pilot(config, reporter, make_runner(config)).run())  # cheaper callbacks than asyncio's loop


if __name__ == "__main__":
    sys.exit(main())
