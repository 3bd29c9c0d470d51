"""Unit tests of the phase table."""

from __future__ import annotations

import itertools

from wms.lifecycle import ALLOWED_MOVES, ENDING_PHASES, Phase, log_entry, sources_of


def test_every_phase_is_reachable_from_creation() -> None:
    seen, frontier = {Phase.PRE_MQ_ACTIVATION}, [Phase.PRE_MQ_ACTIVATION]
    while frontier:
        for nxt in ALLOWED_MOVES[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(Phase)


def test_the_happy_path_and_the_stop_path_are_allowed() -> None:
    path = [Phase.PRE_MQ_ACTIVATION, Phase.PRE_LAUNCH, Phase.PENDING_STARTER, Phase.CONDOR_SUBMIT]
    for src, dst in itertools.pairwise(path):
        assert dst in ALLOWED_MOVES[src]
    assert Phase.CONDOR_COMPLETE in ALLOWED_MOVES[Phase.CONDOR_SUBMIT]
    assert Phase.CONDOR_RM in ALLOWED_MOVES[Phase.PENDING_STOPPER]
    assert Phase.CONDOR_COMPLETE in ALLOWED_MOVES[Phase.CONDOR_RM]


def test_no_way_back_and_ending_phases_only_move_forward() -> None:
    order = list(Phase)
    for src, targets in ALLOWED_MOVES.items():
        for dst in targets:
            assert order.index(dst) > order.index(src), (src, dst)
    assert not ALLOWED_MOVES[Phase.CONDOR_COMPLETE]
    for phase in ENDING_PHASES:
        assert Phase.PENDING_STARTER not in ALLOWED_MOVES[phase]


def test_stopping_is_possible_from_every_live_phase() -> None:
    live = set(Phase) - ENDING_PHASES
    assert set(sources_of(Phase.PENDING_STOPPER)) == {str(p) for p in live}


def test_log_entry_shape() -> None:
    entry = log_entry(Phase.PRE_LAUNCH, False, "TMS", "boom", 12.5)
    assert entry["target_phase"] == "pre-launch" and entry["was_successful"] is False
    assert entry["source_event_time"] == 12.5 and entry["context"] == "boom"
