"""Entry point (``ewms-tms`` / ``python -m tms``): runs the starter, stopper, watcher and file manager until SIGTERM;
``ewms-tms check`` checks this access point instead (:mod:`tms.check`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from tms.backends.base import Backend
from tms.backends.htcondor import HTCondorBackend
from tms.backends.local import LocalBackend
from tms.check import check
from tms.config import ConfigError, TMSConfig
from tms.daemon import poll_loop
from tms.housekeeping import FileManager
from tms.starter import Starter
from tms.stopper import Stopper
from tms.watcher.loop import Watcher
from tms.wms_client import WMSClient

LOGGER = logging.getLogger("tms")

SHUTDOWN_GRACE = 15.0


def make_backend(config: TMSConfig) -> Backend:
    """The configured scheduler backend."""
    if config.backend == "local":
        return LocalBackend(
            config.job_event_log_dir,
            config.state_dir,
            max_concurrent=config.local_max_concurrent_jobs,
            pilot_command=config.local_pilot_command,
            monitor_interval=config.local_monitor_interval,
            kill_grace=config.local_kill_grace,
            pilot_user=config.local_pilot_user,
            sandbox_dir=config.local_sandbox_dir,
        )
    return HTCondorBackend(config.job_event_log_dir)


async def run(config: TMSConfig, stop: asyncio.Event | None = None) -> None:
    """Run every loop until ``stop`` is set (or SIGTERM/SIGINT arrives), then shut down cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if config.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(config.metrics_port)
        LOGGER.info("metrics on port %d", config.metrics_port)

    config.job_event_log_dir.mkdir(parents=True, exist_ok=True)
    wms = WMSClient.from_config(config)
    backend = make_backend(config)
    watcher = Watcher(config, wms)
    starter = Starter(config, wms, backend, watcher, stop)
    stopper = Stopper(config, wms, backend, stop)
    files = FileManager(config, wms)
    LOGGER.info(
        "TMS for schedd %s: backend %s, WMS %s, logs in %s",
        config.schedd,
        backend.name,
        config.ewms_address,
        config.job_event_log_dir,
    )
    tasks = [
        asyncio.create_task(poll_loop("starter", starter.step, stop, config.poll_interval, config.error_wait)),
        asyncio.create_task(poll_loop("stopper", stopper.step, stop, config.poll_interval, config.error_wait)),
        asyncio.create_task(watcher.run(stop)),
        asyncio.create_task(
            poll_loop("file manager", files.step, stop, config.file_manager_interval, config.error_wait)
        ),
    ]
    try:
        await stop.wait()
        LOGGER.info("stopping: letting the loops finish their current step")
        _, still_running = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
        for task in still_running:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await backend.close()
        await wms.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        LOGGER.info("TMS stopped")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``ewms-tms`` (the daemon) or ``ewms-tms check [--wait S]``; settings come from the environment."""
    parser = argparse.ArgumentParser(prog="ewms-tms", description="EWMS task management daemon (settings: env vars)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    checker = commands.add_parser(
        "check", help="check this access point with the TMS's settings; exit 0 if every check passed, 1 if not"
    )
    checker.add_argument(
        "--wait", type=float, default=120.0, help="s to wait for the tiny job's events (default 120)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    args = parse_args(argv)
    try:
        config = TMSConfig.from_env()
    except ConfigError as exc:
        print(f"ewms-tms: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.command == "check":
        backend = HTCondorBackend(config.job_event_log_dir) if config.backend == "htcondor" else None
        sys.exit(asyncio.run(check(config, backend, args.wait)))
    asyncio.run(run(config))


if __name__ == "__main__":
    main()
