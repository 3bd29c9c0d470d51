"""Run the WMS: ``python -m wms`` / ``ewms-wms`` (``MONGODB_URI`` is required; ``ewms dev up`` runs a database)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import uvloop

from wms.config import ConfigError, WMSConfig
from wms.service import WMS

LOGGER = logging.getLogger("wms")


def setup_logging() -> None:
    """Log lines with time, level and origin, at ``LOG_LEVEL`` (INFO)."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
    )
    logging.getLogger("tornado.access").setLevel(os.environ.get("LOG_LEVEL_ACCESS", "WARNING").upper())
    logging.getLogger("pika").setLevel(logging.WARNING)


async def serve(config: WMSConfig) -> None:
    """Run until SIGINT/SIGTERM."""
    wms = WMS(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await wms.start()
        await stop.wait()
        LOGGER.info("shutting down")
    finally:
        await wms.stop()


def main() -> int:
    """Console entry point."""
    setup_logging()
    try:
        config = WMSConfig.from_env()
    except ConfigError as exc:
        print(f"ewms-wms: configuration error: {exc}", file=sys.stderr)
        return 2
    if not config.mongodb_uri:
        print("ewms-wms: configuration error: MONGODB_URI is required (`ewms dev up` runs one)", file=sys.stderr)
        return 2
    uvloop.run(serve(config))  # faster sockets and callbacks than asyncio's default loop
    return 0


if __name__ == "__main__":
    sys.exit(main())
