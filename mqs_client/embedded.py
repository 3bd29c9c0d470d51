"""The embedded MQS: runs inside the WMS, keeps MQ groups and profiles in the WMS database, provisions RabbitMQ.

Collections (in the database handed to :class:`EmbeddedMQS`):

``mq_groups``, one per workflow
    ``workflow_id`` (unique), ``timestamp``, ``queues`` (the reserved ``[{alias, mqid, is_public}]``, fixed by the
    first reservation), ``criteria`` (``{priority}`` once activated), ``activated_ts``, ``deactivated_ts``,
    ``deleted_ts`` (when housekeeping deleted the queues).
``mq_profiles``, one per queue
    the ``MQProfile`` fields plus ``token_expires_at``, ``deactivated_ts`` and ``deleted_ts``.

Every write is a conditional single-document update or an insert guarded by a unique index, so concurrent or
retried calls converge on the same state.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from .broker_admin import BrokerAdmin, BrokerUnavailable
from .config import MQSConfig
from .interface import MQProfile, MQSError, MQSNotFound, TryAgainLater
from .tokens import TokenMinter

LOGGER = logging.getLogger(__name__)

Doc = dict[str, Any]
DUPLICATE_KEY = 11000


def make_mqid() -> str:
    """A queue name as oms-mqclient makes them (``Queue.make_name``)."""
    return "a" + uuid.uuid4().hex[:20]


def _check_reservation(aliases: Sequence[str], public: Sequence[str]) -> None:
    if not aliases:
        raise MQSError("a reservation needs at least one queue alias")
    if not all(isinstance(alias, str) and alias for alias in aliases):
        raise MQSError(f"queue aliases must be non-empty strings, got {list(aliases)!r}")
    unknown = sorted(set(public) - set(aliases))
    if unknown:
        raise MQSError(f"public aliases {unknown} are not among the queue aliases")


class EmbeddedMQS:
    """The MQS interface backed by the WMS database and a RabbitMQ admin account.

    Call :meth:`ensure_indexes` once at start-up and run :meth:`run_housekeeping` as a background task: it deletes
    queues once their grace period after deactivation is over and refreshes tokens of active workflows.
    """

    def __init__(self, db: AsyncDatabase[Doc], config: MQSConfig) -> None:
        self.config = config
        self._groups = db["mq_groups"]
        self._profiles = db["mq_profiles"]
        self._minter = TokenMinter(config)
        self._broker = BrokerAdmin(config.broker_admin_url)
        self._closed = asyncio.Event()

    async def ensure_indexes(self) -> None:
        """Create the indexes that reservation idempotency and housekeeping rely on."""
        await self._groups.create_index("workflow_id", unique=True, name="workflow_id_unique")
        await self._groups.create_index("deactivated_ts", name="deactivated_ts_index")
        await self._profiles.create_index("mqid", unique=True, name="mqid_unique")
        await self._profiles.create_index("workflow_id", name="workflow_id_index")
        await self._profiles.create_index("token_expires_at", name="token_expires_at_index")

    # --- the MQSClient interface -------------------------------------------------------------------------

    async def reserve(self, workflow_id: str, queue_aliases: Sequence[str], public: Sequence[str]) -> list[MQProfile]:
        """Reserve one queue per distinct alias; a repeat (even a concurrent one) returns the first reservation."""
        aliases = list(dict.fromkeys(queue_aliases))
        _check_reservation(aliases, public)
        group: Doc = {
            "workflow_id": workflow_id,
            "timestamp": time.time(),
            "queues": [{"alias": a, "mqid": make_mqid(), "is_public": a in public} for a in aliases],
            "criteria": None,
            "activated_ts": None,
            "deactivated_ts": None,
            "deleted_ts": None,
        }
        try:
            await self._groups.insert_one(group)
        except DuplicateKeyError:
            group = await self._group(workflow_id)
            reserved = {(q["alias"], q["is_public"]) for q in group["queues"]}
            if reserved != {(a, a in public) for a in aliases}:
                raise MQSError(f"workflow {workflow_id} already reserved other queues: {sorted(reserved)}") from None
            return [MQProfile.from_dict(doc) for doc in await self._profile_docs(group)]
        profiles = [self._new_profile(group, queue) for queue in group["queues"]]
        try:
            await self._profiles.insert_many([dict(doc) for doc in profiles], ordered=False)
        except BulkWriteError as exc:  # a concurrent repeat of this reservation inserted some of them first
            if any(error["code"] != DUPLICATE_KEY for error in exc.details["writeErrors"]):
                raise
        LOGGER.info(
            "reserved queues for workflow %s: %s",
            workflow_id,
            ", ".join(f"{q['alias']}={q['mqid']}{' (public)' if q['is_public'] else ''}" for q in group["queues"]),
        )
        return [MQProfile.from_dict(doc) for doc in profiles]

    async def activate(self, workflow_id: str, priority: int) -> list[MQProfile]:
        """Declare the workflow's queues and mint their tokens; a repeat keeps tokens that are still fresh."""
        group = await self._group(workflow_id)
        if group["deactivated_ts"] is not None:
            raise MQSError(f"workflow {workflow_id} was deactivated: its queues cannot be activated")
        mqids = [q["mqid"] for q in group["queues"]]
        try:
            await self._broker.declare_queues(mqids)
        except BrokerUnavailable as exc:
            LOGGER.warning("activation of workflow %s postponed: %s", workflow_id, exc)
            raise TryAgainLater(str(exc)) from exc
        docs = await self._with_fresh_tokens(await self._profile_docs(group), activating=True)
        await self._groups.update_one(
            {"workflow_id": workflow_id, "activated_ts": None},
            {"$set": {"activated_ts": time.time(), "criteria": {"priority": priority}}},
        )
        LOGGER.info("activated workflow %s: %d queue(s) declared on %s", workflow_id, len(mqids), self._broker.where)
        return [MQProfile.from_dict(doc) for doc in docs]

    async def get_profiles(self, mqids: Sequence[str]) -> list[MQProfile]:
        """Profiles in the order asked, with tokens re-minted when close to expiry; raises MQSNotFound."""
        docs = await self._profiles.find({"mqid": {"$in": list(mqids)}}).to_list()
        missing = sorted(set(mqids) - {doc["mqid"] for doc in docs})
        if missing:
            raise MQSNotFound(f"no MQ profile with mqid {', '.join(missing)}")
        by_id = {doc["mqid"]: doc for doc in await self._with_fresh_tokens(docs)}
        return [MQProfile.from_dict(by_id[mqid]) for mqid in mqids]

    async def get_public_profiles(self, workflow_id: str) -> list[MQProfile]:
        """The workflow's public profiles (``is_activated`` false until activation); raises MQSNotFound."""
        docs = await self._profile_docs(await self._group(workflow_id))
        return [
            MQProfile.from_dict(doc) for doc in await self._with_fresh_tokens(doc for doc in docs if doc["is_public"])
        ]

    async def deactivate(self, workflow_id: str) -> None:
        """Record the deactivation (a repeat keeps the first time); housekeeping deletes the queues after the grace."""
        now = time.time()
        result = await self._groups.update_one(
            {"workflow_id": workflow_id, "deactivated_ts": None}, {"$set": {"deactivated_ts": now}}
        )
        group = await self._group(workflow_id)
        await self._profiles.update_many(
            {"workflow_id": workflow_id, "deactivated_ts": None},
            {"$set": {"deactivated_ts": group["deactivated_ts"]}},
        )
        if result.modified_count:
            LOGGER.info(
                "deactivated workflow %s: its %d queue(s) are deleted in %.0f s",
                workflow_id,
                len(group["queues"]),
                self.config.mq_delete_grace_seconds,
            )

    async def forget(self, workflow_id: str) -> list[dict[str, Any]] | None:
        """Delete the records of a retired workflow's queues (retention); the deleted profiles, tokens removed.

        None while its queues still exist on the broker (not deactivated, or still in their grace period).
        """
        group = await self._groups.find_one({"workflow_id": workflow_id}, {"_id": False})
        if group is None:
            return []
        if not group.get("deleted_ts"):
            return None
        profiles = await self._profiles.find(
            {"workflow_id": workflow_id}, {"_id": False, "auth_token": False}
        ).to_list()
        await self._profiles.delete_many({"workflow_id": workflow_id})
        await self._groups.delete_one({"workflow_id": workflow_id})
        LOGGER.info("forgot the %d queue profile(s) of workflow %s", len(profiles), workflow_id)
        return profiles

    async def close(self) -> None:
        """Stop :meth:`run_housekeeping` and close the broker admin connections (the database is the caller's)."""
        self._closed.set()
        await self._broker.close()

    # --- housekeeping ---------------------------------------------------------------------------------------

    async def run_housekeeping(self, stop: asyncio.Event) -> None:
        """Every ``MQS_HOUSEKEEPING_INTERVAL_SECONDS`` until ``stop`` is set or the client is closed: delete due
        queues and refresh expiring tokens. A failed pass is logged and the next one runs on schedule."""
        interval = self.config.housekeeping_interval_seconds
        LOGGER.info(
            "MQS housekeeping every %.0f s (queues deleted %.0f s after deactivation)",
            interval,
            self.config.mq_delete_grace_seconds,
        )
        while not (stop.is_set() or self._closed.is_set()):
            try:
                await self.housekeep()
            except Exception:
                LOGGER.exception("MQS housekeeping pass failed; next pass in %.0f s", interval)
            waiters = [asyncio.ensure_future(event.wait()) for event in (stop, self._closed)]
            await asyncio.wait(waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        LOGGER.info("MQS housekeeping stopped")

    async def housekeep(self) -> None:
        """One housekeeping pass: delete the queues whose grace is over, then refresh expiring tokens."""
        await self._delete_due_queues()
        horizon = time.time() + self.config.broker_token_refresh_margin_seconds
        expiring = await self._profiles.find(
            {"is_activated": True, "deactivated_ts": None, "token_expires_at": {"$lt": horizon}}
        ).to_list()
        await self._with_fresh_tokens(expiring)

    async def _delete_due_queues(self) -> None:
        due_before = time.time() - self.config.mq_delete_grace_seconds
        groups = await self._groups.find(
            {"deactivated_ts": {"$ne": None, "$lte": due_before}, "deleted_ts": None}
        ).to_list()
        for group in groups:
            workflow_id, mqids = group["workflow_id"], [q["mqid"] for q in group["queues"]]
            try:
                await self._broker.delete_queues(mqids)
            except BrokerUnavailable as exc:
                LOGGER.warning("queues of workflow %s not deleted yet (next pass retries): %s", workflow_id, exc)
                continue
            now = time.time()
            await self._profiles.update_many(
                {"workflow_id": workflow_id},
                {"$set": {"is_activated": False, "auth_token": None, "token_expires_at": None, "deleted_ts": now}},
            )
            await self._groups.update_one({"workflow_id": workflow_id}, {"$set": {"deleted_ts": now}})
            LOGGER.info(
                "deleted %d queue(s) of workflow %s, deactivated %.0f s ago",
                len(mqids),
                workflow_id,
                now - group["deactivated_ts"],
            )

    # --- helpers ----------------------------------------------------------------------------------------------

    async def _group(self, workflow_id: str) -> Doc:
        group = await self._groups.find_one({"workflow_id": workflow_id})
        if group is None:
            raise MQSNotFound(f"no MQ group for workflow {workflow_id}")
        return group

    async def _profile_docs(self, group: Doc) -> list[Doc]:
        """The group's profiles in reservation order, inserting any that an interrupted reservation left out."""
        stored = {
            doc["mqid"]: doc for doc in await self._profiles.find({"workflow_id": group["workflow_id"]}).to_list()
        }
        for queue in group["queues"]:
            if queue["mqid"] in stored:
                continue
            doc = self._new_profile(group, queue)
            try:
                await self._profiles.insert_one(dict(doc))
            except DuplicateKeyError:  # a concurrent reservation inserted it first
                doc = await self._profiles.find_one({"mqid": queue["mqid"]}) or doc
            stored[queue["mqid"]] = doc
        return [stored[q["mqid"]] for q in group["queues"]]

    def _new_profile(self, group: Doc, queue: Doc) -> Doc:
        """The profile of one reserved queue, not yet activated."""
        return {
            "mqid": queue["mqid"],
            "workflow_id": group["workflow_id"],
            "timestamp": group["timestamp"],
            "alias": queue["alias"],
            "is_public": queue["is_public"],
            "is_activated": False,
            "auth_token": None,
            "broker_type": self.config.broker_type,
            "broker_address": self.config.broker_address,
            "token_expires_at": None,
            "deactivated_ts": None,
            "deleted_ts": None,
        }

    async def _with_fresh_tokens(self, docs: Iterable[Doc], activating: bool = False) -> list[Doc]:
        """The docs, after minting tokens for those that need one: not yet activated (when ``activating``), or
        active with less than the refresh margin left. All new tokens are written in one bulk write, each a
        compare-and-set on the old expiry so that concurrent callers never overwrite each other; when some lost,
        the minted docs are reloaded (the winners' tokens)."""
        horizon = time.time() + self.config.broker_token_refresh_margin_seconds
        result: list[Doc] = []
        writes: list[UpdateOne] = []
        minted: list[int] = []  # indexes in result of the docs given new tokens
        refreshed = 0
        for doc in docs:
            live = doc["deactivated_ts"] is None and doc["deleted_ts"] is None
            expiring = doc["is_activated"] and (doc["token_expires_at"] or 0) < horizon
            if not (live and (expiring or (activating and not doc["is_activated"]))):
                result.append(doc)
                continue
            token = self._minter.mint(doc["mqid"], doc["workflow_id"])
            update = {"is_activated": True, "auth_token": token.token, "token_expires_at": token.expires_at}
            writes.append(
                UpdateOne(
                    {"mqid": doc["mqid"], "deactivated_ts": None, "token_expires_at": doc["token_expires_at"]},
                    {"$set": update},
                )
            )
            minted.append(len(result))
            result.append(doc | update)
            refreshed += bool(doc["is_activated"])
        if writes and (await self._profiles.bulk_write(writes, ordered=False)).modified_count < len(writes):
            for index in minted:
                result[index] = await self._profiles.find_one({"mqid": result[index]["mqid"]}) or result[index]
        if refreshed:
            LOGGER.info("refreshed %d queue token(s) close to expiry", refreshed)
        return result
