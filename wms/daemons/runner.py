"""Runs the WMS's daemons on the instance that holds the daemon lease (``wms.daemons.lease``).

Any number of instances may run with ``WMS_RUN_DAEMONS=true``: each runs :meth:`DaemonRunner.run`, which renews or
takes the lease, starts the daemons when this instance gets it and stops them (cancels their tasks) when it loses
it or can no longer renew it in time. Each daemon pass also checks the lease first, so a paused process that wakes
up after its lease ran out does not start another pass before the runner stops it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from mqs_client import ManagedMQSClient
from wms.config import WMSConfig
from wms.daemons.launch_control import LaunchControl
from wms.daemons.lease import DaemonLease
from wms.daemons.loop import Wakeup, Wakeups, run_forever
from wms.daemons.mq_activator import MQActivator
from wms.daemons.retention import Retention
from wms.daemons.stuck_taskforces import StuckTaskforces
from wms.database.leases import LeaseRecords
from wms.database.store import Store
from wms.lifecycle import Lifecycle
from wms.metrics import Metrics

LOGGER = logging.getLogger(__name__)
LEASE_NAME = "daemons"
STOP_TIMEOUT = 10.0  # a clean shutdown waits this long for passes in progress


class DaemonRunner:
    """The daemons of one WMS instance, run while it holds the lease."""

    def __init__(
        self,
        store: Store,
        lifecycle: Lifecycle,
        mqs: ManagedMQSClient,
        retention: Retention,
        config: WMSConfig,
        wakeups: Wakeups,
        metrics: Metrics,
        instance_id: str,
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.mqs = mqs
        self.retention = retention
        self.config = config
        self.wakeups = wakeups
        self.metrics = metrics
        self.lease = DaemonLease(LeaseRecords(store.db, LEASE_NAME), instance_id, config.daemon_lease_seconds)
        self._tasks: list[asyncio.Task[None]] = []
        self._daemons_stop = asyncio.Event()
        self._daemon_wakeups: list[Wakeup] = []

    async def holder(self) -> str | None:
        """The id of the instance holding the lease now (None: free; a dead holder's until its lease time passed)."""
        return (await self.lease.records.read()).holder

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the lease and run the daemons while holding it, until ``stop``; then stop them and release it."""
        lease = self.lease
        try:
            while not stop.is_set():
                budget = self._within_lease(lease.interval)
                try:
                    async with asyncio.timeout(budget):
                        await lease.attempt()
                except TimeoutError:
                    LOGGER.warning("daemon lease attempt timed out after %.1f s", budget)
                except Exception as exc:  # the database may be down: try again at the next attempt
                    LOGGER.warning("daemon lease attempt failed: %s: %s", type(exc).__name__, exc)
                await self._follow_lease()
                try:
                    async with asyncio.timeout(self._within_lease(lease.next_attempt_in())):
                        await stop.wait()
                except TimeoutError:
                    pass
                await self._follow_lease()
        finally:
            await self._stop_daemons(STOP_TIMEOUT)
            try:
                await lease.release()
            except Exception as exc:  # the lease then expires by itself
                LOGGER.warning("daemon lease not released: %s: %s", type(exc).__name__, exc)

    def _within_lease(self, seconds: float) -> float:
        """``seconds``, cut at the time the running daemons must stop unless the lease is renewed."""
        if not self._tasks:
            return seconds
        return max(0.0, min(seconds, self.lease.stop_deadline() - time.monotonic()))

    async def _follow_lease(self) -> None:
        """Start the daemons when this instance holds the lease, stop them when it does not (or no longer surely)."""
        if self.lease.held() and not self._tasks:
            self._start_daemons()
        elif self._tasks and not self.lease.held():
            LOGGER.warning("daemon lease lost or not renewed in time: stopping the daemons")
            await self._stop_daemons(0.0)

    def _start_daemons(self) -> None:
        """The MQ activator, launch control, retention, the stuck-taskforce sweeper and MQS housekeeping."""
        activator = MQActivator(self.store, self.lifecycle, self.mqs, self.config, self.wakeups.launch)
        launcher = LaunchControl(self.store, self.lifecycle, self.config)
        sweeper = StuckTaskforces(self.store, self.lifecycle, self.config.unsubmitted_stop_grace_seconds)
        poll = self.config.daemon_poll_seconds
        self._daemons_stop = stop = asyncio.Event()
        self._daemon_wakeups = []
        self._tasks = [
            self._daemon("mq-activator", activator.one_pass, self.wakeups.mq_activator, poll),
            self._daemon("launch-control", launcher.one_pass, self.wakeups.launch, poll),
            self._daemon(
                "retention", self.retention.one_pass, self.wakeups.retention, self.config.retention_interval_seconds
            ),
            self._daemon("stuck-taskforces", sweeper.one_pass, Wakeup(), sweeper.grace / 2 or poll),
            asyncio.create_task(self.mqs.run_housekeeping(stop)),
        ]
        self.metrics.daemon_lease_held.set(1)
        LOGGER.info("daemons started on %s", self.lease.instance_id)

    def _daemon(
        self, name: str, one_pass: Callable[[], Awaitable[bool]], wakeup: Wakeup, poll: float
    ) -> asyncio.Task[None]:
        async def guarded() -> bool:
            return self.lease.held() and await one_pass()

        self._daemon_wakeups.append(wakeup)
        return asyncio.create_task(run_forever(name, guarded, wakeup, poll, self._daemons_stop))

    async def _stop_daemons(self, grace: float) -> None:
        """Stop the daemons: let passes in progress finish for up to ``grace`` s, then cancel them."""
        if not self._tasks:
            return
        self._daemons_stop.set()
        for wakeup in self._daemon_wakeups:
            wakeup.set()
        pending = set(self._tasks)
        if grace:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.metrics.daemon_lease_held.set(0)
        LOGGER.info("daemons stopped on %s", self.lease.instance_id)
