"""The taskforce phase table and the only code that changes a taskforce's phase.

Every move is one conditional atomic update (``phase`` must be a phase the table allows to move to the target),
so retries and concurrent callers are safe: the loser of a race matches nothing and changes nothing.
Every attempt, failed ones included, is appended to ``phase_change_log`` (``store.append_log``).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ReturnDocument, UpdateMany
from pymongo.asynchronous.collection import AsyncCollection

from wms.database.store import append_log, one_of

LOGGER = logging.getLogger(__name__)


class Phase(enum.StrEnum):
    """Taskforce phases, in lifecycle order."""

    PRE_MQ_ACTIVATION = "pre-mq-activation"
    PRE_LAUNCH = "pre-launch"
    PENDING_STARTER = "pending-starter"
    CONDOR_SUBMIT = "condor-submit"
    PENDING_STOPPER = "pending-stopper"
    CONDOR_RM = "condor-rm"
    CONDOR_COMPLETE = "condor-complete"


ALLOWED_MOVES: Mapping[Phase, frozenset[Phase]] = {
    Phase.PRE_MQ_ACTIVATION: frozenset({Phase.PRE_LAUNCH, Phase.PENDING_STOPPER}),
    Phase.PRE_LAUNCH: frozenset({Phase.PENDING_STARTER, Phase.PENDING_STOPPER}),
    Phase.PENDING_STARTER: frozenset({Phase.CONDOR_SUBMIT, Phase.PENDING_STOPPER}),
    Phase.CONDOR_SUBMIT: frozenset({Phase.PENDING_STOPPER, Phase.CONDOR_COMPLETE}),
    Phase.PENDING_STOPPER: frozenset({Phase.CONDOR_RM, Phase.CONDOR_COMPLETE}),
    Phase.CONDOR_RM: frozenset({Phase.CONDOR_COMPLETE}),
    Phase.CONDOR_COMPLETE: frozenset(),
}

ENDING_PHASES = frozenset({Phase.PENDING_STOPPER, Phase.CONDOR_RM, Phase.CONDOR_COMPLETE})
LIVE_PHASES = frozenset(Phase) - ENDING_PHASES


def sources_of(target: Phase) -> list[str]:
    """Phases from which ``target`` may be entered."""
    return sorted(str(src) for src, targets in ALLOWED_MOVES.items() if target in targets)


def log_entry(
    target: Phase,
    ok: bool,
    source_entity: str,
    context: str,
    source_event_time: float | None = None,
) -> dict[str, Any]:
    """One ``phase_change_log`` entry."""
    return {
        "target_phase": str(target),
        "timestamp": time.time(),
        "was_successful": ok,
        "source_event_time": source_event_time,
        "source_entity": source_entity,
        "context": context,
    }


class Lifecycle:
    """Phase moves on the taskforce collection."""

    def __init__(self, taskforces: AsyncCollection[dict[str, Any]]) -> None:
        self.taskforces = taskforces

    async def move(
        self,
        uuid: str,
        target: Phase,
        *,
        source_entity: str,
        context: str,
        extra: Mapping[str, Any] | None = None,
        source_event_time: float | None = None,
    ) -> dict[str, Any] | None:
        """Move one taskforce into ``target`` if the table allows it; the updated document, else None."""
        entry = log_entry(target, True, source_entity, context, source_event_time)
        doc = await self.taskforces.find_one_and_update(
            {"taskforce_uuid": uuid, "phase": one_of(sources_of(target))},
            {"$set": {"phase": str(target), **(extra or {})}, **append_log(entry)},
            return_document=ReturnDocument.AFTER,
            projection={"_id": False},
        )
        if doc is not None:
            LOGGER.info("taskforce %s -> %s (%s: %s)", uuid, target, source_entity, context)
        return doc

    async def move_many(
        self,
        query: Mapping[str, Any],
        target: Phase,
        *,
        source_entity: str,
        context: str,
    ) -> int:
        """Move every matching taskforce the table allows into ``target``; the number moved."""
        return await self.move_each([query], target, source_entity=source_entity, context=context)

    async def move_each(
        self,
        queries: Sequence[Mapping[str, Any]],
        target: Phase,
        *,
        source_entity: str,
        context: str,
    ) -> int:
        """:meth:`move_many` for each query, all in one bulk write (one round trip); the number moved.

        Each query should select by an indexed equality (``taskforce_uuid``, ``workflow_id``), one per id (see
        ``store.one_of``).
        """
        if not queries:
            return 0
        update = {
            "$set": {"phase": str(target)},
            **append_log(log_entry(target, True, source_entity, context)),
        }
        sources = one_of(sources_of(target))
        result = await self.taskforces.bulk_write(
            [UpdateMany({**query, "phase": sources}, update) for query in queries], ordered=False
        )
        if result.modified_count:
            LOGGER.info("%d taskforces -> %s (%s: %s)", result.modified_count, target, source_entity, context)
        return int(result.modified_count)

    async def record_failure(
        self,
        query: Mapping[str, Any],
        target: Phase,
        *,
        source_entity: str,
        context: str,
        counter: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        """Log a failed attempt to reach ``target`` on matching taskforces (phase unchanged); the number logged."""
        update: dict[str, Any] = append_log(log_entry(target, False, source_entity, context))
        if counter:
            update["$inc"] = {counter: 1}
        if extra:
            update["$set"] = dict(extra)
        result = await self.taskforces.update_many(dict(query), update)
        if result.modified_count:
            LOGGER.warning(
                "%d taskforces failed to reach %s (%s: %s)", result.modified_count, target, source_entity, context
            )
        return int(result.modified_count)
