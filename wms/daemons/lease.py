"""The daemon lease: of the WMS instances with daemons on, the one holding the lease runs them.

The lease is one database document (``wms.database.leases``), changed by conditional updates only:
- the holder renews it every quarter of the lease time; it counts the lease as its own for the lease time from the
  *start* of its last successful renewal, and stops its daemons once two thirds of that have passed without a
  renewal (database unreachable, process paused), a third of the lease time before the lease could expire;
- a contender takes the lease when it is free, or once it has seen the same holder and version for the holder's
  whole lease time on its own monotonic clock. The version changes on every renewal and that first sight comes after
  the renewal was written, so by then the holder has stopped its daemons; no clocks need to agree between machines.
  The take is conditional on that holder and version: of concurrent contenders exactly one wins, and a holder that
  renewed meanwhile keeps the lease.
So a dead holder is replaced within the lease time plus one renewal interval after its last renewal, and two
instances never run the daemons at once.
"""

from __future__ import annotations

import logging
import time

from wms.database.leases import LeaseRecords, LeaseState

LOGGER = logging.getLogger(__name__)
RENEWALS_PER_LEASE = 4
STOP_MARGIN = 1 / 3  # of the lease time: left for the daemons to stop


class DaemonLease:
    """This instance's view of the lease: :meth:`attempt` renews or takes it, :meth:`held` says whether the daemons
    may run, :meth:`next_attempt_in` when to try again."""

    def __init__(self, records: LeaseRecords, instance_id: str, lease_seconds: float) -> None:
        self.records = records
        self.instance_id = instance_id
        self.lease_seconds = lease_seconds
        self.interval = lease_seconds / RENEWALS_PER_LEASE
        self._valid_until = 0.0  # monotonic end of our lease; 0 while we do not hold it
        self._seen: LeaseState | None = None  # another holder's lease, as first seen ...
        self._seen_at = 0.0  # ... at this monotonic time

    def held(self) -> bool:
        """True while this instance holds the lease with time left to stop its daemons before it could expire."""
        return time.monotonic() < self.stop_deadline()

    def stop_deadline(self) -> float:
        """The monotonic time by which the daemons must be stopping unless the lease is renewed."""
        return self._valid_until - self.lease_seconds * STOP_MARGIN

    def next_attempt_in(self) -> float:
        """Seconds until the next attempt: a renewal interval, or sooner when another holder's lease runs out."""
        if self._valid_until or self._seen is None or self._seen.holder is None:
            return self.interval
        expires_in = self._seen_at + self._seen.lease_seconds - time.monotonic()
        return max(0.0, min(self.interval, expires_in))

    async def attempt(self) -> bool:
        """Renew the lease (holder) or take it if it is free or expired (contender); whether this instance holds it."""
        started = time.monotonic()
        if self._valid_until:
            if await self.records.renew(self.instance_id, self.lease_seconds):
                self._valid_until = started + self.lease_seconds
                return True
            self._valid_until = 0.0
            LOGGER.warning("daemon lease lost: another instance took it")
        lease = await self.records.read()
        now = time.monotonic()
        if lease != self._seen:
            self._seen, self._seen_at = lease, now
        expired = now - self._seen_at >= lease.lease_seconds
        if lease.holder not in (None, self.instance_id) and not expired:
            return False
        started = time.monotonic()
        if not await self.records.take(self.instance_id, lease, self.lease_seconds):
            return False
        self._valid_until = started + self.lease_seconds
        self._seen = None
        LOGGER.info("daemon lease taken by %s (was %s, version %d)", self.instance_id, lease.holder, lease.version)
        return True

    async def release(self) -> None:
        """Give the lease up (after the daemons stopped), so another instance takes it at once."""
        if self._valid_until and await self.records.release(self.instance_id):
            LOGGER.info("daemon lease released by %s", self.instance_id)
        self._valid_until = 0.0
