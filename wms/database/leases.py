"""The ``leases`` collection: one document per lease, changed only by conditional single-document updates.

A lease document is ``{_id: name, holder: instance id or None, version: int, lease_seconds: float}``. Every change
bumps ``version``, so a contender can tell a lease that is still being renewed from one left behind. The document
is created by a plain insert (a duplicate is ignored): the embedded server does not apply ``$setOnInsert`` to an
upsert. The timing rules (who may take a lease when) are in ``wms.daemons.lease``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError


@dataclass(frozen=True)
class LeaseState:
    """A lease as read: its holder (None: free), its version and the holder's lease time."""

    holder: str | None
    version: int
    lease_seconds: float


class LeaseRecords:
    """The database calls of one named lease."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], name: str) -> None:
        self.coll: AsyncCollection[dict[str, Any]] = db["leases"]
        self.name = name

    async def read(self) -> LeaseState:
        """The lease as it is now (created free on first use)."""
        doc = await self.coll.find_one({"_id": self.name})
        if doc is None:
            try:
                await self.coll.insert_one({"_id": self.name, "holder": None, "version": 0, "lease_seconds": 0.0})
            except DuplicateKeyError:  # another instance created it first
                pass
            doc = await self.coll.find_one({"_id": self.name})
            if doc is None:
                raise LookupError(f"lease {self.name} vanished while being created")
        return LeaseState(doc["holder"], int(doc["version"]), float(doc["lease_seconds"]))

    async def take(self, holder: str, seen: LeaseState, lease_seconds: float) -> bool:
        """Become the holder if the lease is still exactly as ``seen`` (so of concurrent takers one wins)."""
        result = await self.coll.update_one(
            {"_id": self.name, "holder": seen.holder, "version": seen.version},
            {"$set": {"holder": holder, "lease_seconds": lease_seconds}, "$inc": {"version": 1}},
        )
        return bool(result.modified_count)

    async def renew(self, holder: str, lease_seconds: float) -> bool:
        """Renew the lease if ``holder`` still holds it."""
        result = await self.coll.update_one(
            {"_id": self.name, "holder": holder},
            {"$set": {"lease_seconds": lease_seconds}, "$inc": {"version": 1}},
        )
        return bool(result.modified_count)

    async def release(self, holder: str) -> bool:
        """Free the lease if ``holder`` holds it (a clean stop: another instance may take it at once)."""
        result = await self.coll.update_one(
            {"_id": self.name, "holder": holder}, {"$set": {"holder": None}, "$inc": {"version": 1}}
        )
        return bool(result.modified_count)
