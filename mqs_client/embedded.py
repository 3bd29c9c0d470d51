"""The embedded MQS: runs inside the WMS, keeps MQ groups and profiles in the WMS database, provisions RabbitMQ.

Each workflow gets a RabbitMQ virtual host of its own, named once at reservation and never reused: its tokens reach
nothing outside it, and deleting it at retirement removes every queue and closes every connection, whatever old
tokens try later. Besides the queues the user asked for, each workflow has a failed-events queue
(:data:`FAILED_EVENTS_ALIAS`, public) where the broker dead-letters events past the delivery limit.

Collections (in the database handed to :class:`EmbeddedMQS`):

``mq_groups``, one per workflow
    ``workflow_id`` (unique), ``vhost``, ``timestamp``, ``queues`` (the reserved ``[{alias, mqid, is_public}]``,
    fixed by the first reservation, the failed-events queue last), ``criteria`` (``{priority}`` once activated),
    ``activated_ts``, ``deactivated_ts``, ``deleted_ts`` (when housekeeping deleted the vhost).
``mq_profiles``, one per queue
    the ``MQProfile`` fields plus ``vhost``, ``token_expires_at``, ``deactivated_ts`` and ``deleted_ts``.

Every write is a conditional single-document update or an insert guarded by a unique index, so concurrent or
retried calls converge on the same state.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from .broker_admin import BrokerAdmin, BrokerUnavailable, Policy, QueueStats, workflow_policies
from .config import MQSConfig
from .interface import FAILED_EVENTS_ALIAS, MQProfile, MQSError, MQSNotFound, QueueDepth, TryAgainLater
from .tokens import TokenMinter

LOGGER = logging.getLogger(__name__)

Doc = dict[str, Any]
DUPLICATE_KEY = 11000


def make_mqid() -> str:
    """A queue name as oms-mqclient makes them (``Queue.make_name``)."""
    return "a" + uuid.uuid4().hex[:20]


def make_vhost(workflow_id: str) -> str:
    """A vhost name never used before: the workflow id (characters safe in addresses and token scopes only) plus
    a random suffix, so that a deleted workflow's name is never revived for its old tokens."""
    return f"ewms-{re.sub(r'[^A-Za-z0-9_.-]', '_', workflow_id)[:64]}-{uuid.uuid4().hex[:12]}"


def _check_reservation(aliases: Sequence[str], public: Sequence[str]) -> None:
    if not aliases:
        raise MQSError("a reservation needs at least one queue alias")
    if not all(isinstance(alias, str) and alias for alias in aliases):
        raise MQSError(f"queue aliases must be non-empty strings, got {list(aliases)!r}")
    if FAILED_EVENTS_ALIAS in aliases:
        raise MQSError(f"queue alias {FAILED_EVENTS_ALIAS!r} is reserved for the failed-events queue")
    unknown = sorted(set(public) - set(aliases))
    if unknown:
        raise MQSError(f"public aliases {unknown} are not among the queue aliases")


class EmbeddedMQS:
    """The MQS interface backed by the WMS database and a RabbitMQ management account.

    Call :meth:`ensure_indexes` once at start-up and run :meth:`run_housekeeping` as a background task: it deletes
    vhosts once their grace period after deactivation is over and refreshes tokens of active workflows.
    """

    def __init__(self, db: AsyncDatabase[Doc], config: MQSConfig) -> None:
        self.config = config
        self._groups = db["mq_groups"]
        self._profiles = db["mq_profiles"]
        self._minter = TokenMinter(config)
        self._broker = BrokerAdmin(config.broker_management_url)
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
        """Reserve one queue per distinct alias and the failed-events queue; a repeat (even a concurrent one)
        returns the first reservation."""
        aliases = list(dict.fromkeys(queue_aliases))
        _check_reservation(aliases, public)
        queues = [{"alias": a, "mqid": make_mqid(), "is_public": a in public} for a in aliases]
        group: Doc = {
            "workflow_id": workflow_id,
            "vhost": make_vhost(workflow_id),
            "timestamp": time.time(),
            "queues": [*queues, {"alias": FAILED_EVENTS_ALIAS, "mqid": make_mqid(), "is_public": True}],
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
            if reserved != {(a, a in public) for a in aliases} | {(FAILED_EVENTS_ALIAS, True)}:
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
        """Create the workflow's vhost with its policies and limits, declare its queues and mint their tokens;
        a repeat keeps tokens that are still fresh."""
        group = await self._group(workflow_id)
        if group["deactivated_ts"] is not None:
            raise MQSError(f"workflow {workflow_id} was deactivated: its queues cannot be activated")
        vhost, mqids = group["vhost"], [q["mqid"] for q in group["queues"]]
        try:
            await self._broker.create_vhost(vhost, self._policies(group), max_queues=len(mqids))
            await self._broker.declare_queues(vhost, mqids)
        except BrokerUnavailable as exc:
            LOGGER.warning("activation of workflow %s postponed: %s", workflow_id, exc)
            raise TryAgainLater(str(exc)) from exc
        if (await self._group(workflow_id))["deactivated_ts"] is not None:
            await self._retire_vhost(workflow_id, vhost)  # deactivated while we created it: never leave it behind
            raise MQSError(f"workflow {workflow_id} was deactivated: its queues cannot be activated")
        docs = await self._with_fresh_tokens(await self._profile_docs(group), activating=True)
        await self._groups.update_one(
            {"workflow_id": workflow_id, "activated_ts": None},
            {"$set": {"activated_ts": time.time(), "criteria": {"priority": priority}}},
        )
        LOGGER.info(
            "activated workflow %s: %d queue(s) in vhost %s on %s", workflow_id, len(mqids), vhost, self._broker.where
        )
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

    async def renew_token(self, workflow_id: str, mqid: str) -> MQProfile:
        """A token minted now for an active queue (not stored: the profile keeps its own, refreshed as usual)."""
        doc = await self._profiles.find_one({"mqid": mqid})
        if doc is None or doc["workflow_id"] != workflow_id:
            raise MQSNotFound(f"workflow {workflow_id} has no queue {mqid}")
        if not doc["is_activated"] or doc["deactivated_ts"] is not None or doc["deleted_ts"] is not None:
            raise MQSError(f"queue {mqid} is not active")
        token = self._minter.mint(doc["vhost"], mqid, doc["workflow_id"])
        return MQProfile.from_dict(doc | {"auth_token": token.token})

    async def queue_depths(self, workflow_id: str) -> list[QueueDepth]:
        """The broker's figures for each reserved queue, from one management call on the workflow's vhost."""
        group = await self._group(workflow_id)
        stats: list[QueueStats] = []
        if group["activated_ts"] is not None and group["deleted_ts"] is None:
            try:
                stats = await self._broker.queue_stats(group["vhost"])
            except BrokerUnavailable as exc:
                raise TryAgainLater(str(exc)) from exc
        return _depths(group, stats)

    async def queue_depths_of(self, workflow_ids: Sequence[str]) -> dict[str, list[QueueDepth]]:
        """The figures of every active workflow among ``workflow_ids``: one read of their groups, one management call
        for the queues of every vhost."""
        groups = await self._groups.find(
            {"workflow_id": {"$in": list(workflow_ids)}, "activated_ts": {"$ne": None}, "deleted_ts": None}
        ).to_list(None)
        if not groups:
            return {}
        try:
            stats = await self._broker.all_queue_stats()
        except BrokerUnavailable as exc:
            raise TryAgainLater(str(exc)) from exc
        return {group["workflow_id"]: _depths(group, stats.get(group["vhost"], [])) for group in groups}

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

        None while its vhost still exists on the broker (not deactivated, or still in their grace period).
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
        vhosts and refresh expiring tokens. A failed pass is logged and the next one runs on schedule."""
        interval = self.config.housekeeping_interval_seconds
        LOGGER.info(
            "MQS housekeeping every %.0f s (vhosts deleted %.0f s after deactivation)",
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
        """One housekeeping pass: delete the vhosts whose grace is over, then refresh expiring tokens."""
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
            try:
                await self._retire_vhost(group["workflow_id"], group["vhost"])
            except BrokerUnavailable as exc:
                LOGGER.warning("vhost %s not deleted yet (next pass retries): %s", group["vhost"], exc)
                continue
            LOGGER.info(
                "deleted vhost %s with the %d queue(s) of workflow %s, deactivated %.0f s ago",
                group["vhost"],
                len(group["queues"]),
                group["workflow_id"],
                time.time() - group["deactivated_ts"],
            )

    async def _retire_vhost(self, workflow_id: str, vhost: str) -> None:
        """Delete the vhost (its queues, messages and connections go with it), then mark the records deleted."""
        await self._broker.delete_vhost(vhost)
        now = time.time()
        await self._profiles.update_many(
            {"workflow_id": workflow_id},
            {"$set": {"is_activated": False, "auth_token": None, "token_expires_at": None, "deleted_ts": now}},
        )
        await self._groups.update_one({"workflow_id": workflow_id, "deleted_ts": None}, {"$set": {"deleted_ts": now}})

    def _policies(self, group: Doc) -> list[Policy]:
        """The workflow's policies (:func:`~mqs_client.broker_admin.workflow_policies`) with this MQS's limits."""
        failed = next(q["mqid"] for q in group["queues"] if q["alias"] == FAILED_EVENTS_ALIAS)
        config = self.config
        return workflow_policies(failed, config.mq_max_length, config.mq_max_length_bytes, config.mq_delivery_limit)

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
            "broker_address": f"{self.config.broker_address}/{group['vhost']}",
            "vhost": group["vhost"],
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
            token = self._minter.mint(doc["vhost"], doc["mqid"], doc["workflow_id"])
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


def _depths(group: Doc, stats: Sequence[QueueStats]) -> list[QueueDepth]:
    """Each reserved queue of the group with the broker's figures (None where the broker has none)."""
    by_name = {s.name: s for s in stats}
    depths = []
    for queue in group["queues"]:
        found = by_name.get(queue["mqid"])
        figures = (found.ready, found.unacknowledged, found.consumers) if found else (None, None, None)
        depths.append(QueueDepth(queue["mqid"], queue["alias"], *figures))
    return depths
