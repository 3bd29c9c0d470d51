"""A broker connection dropped mid-run: the pilot reconnects and no event is lost (at-least-once)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from pilot_helpers import Broker, start_pilot


def test_connections_closed_mid_run_lose_no_event(rmq: Broker, pilot_env: Callable[..., dict[str, str]]) -> None:
    qin, qout = rmq.new_queues(2)
    events = [f"event-{i:03d}" for i in range(80)]
    rmq.publish(qin, events)
    user = f"pilot-drop-{uuid.uuid4().hex[:8]}"  # token subject: lets us close only this pilot's connections
    env = pilot_env(
        [qin],
        [qout],
        sub=user,
        EWMS_PILOT_TASK_ARGS="""sh -c 'sleep 0.1; cp "$EWMS_TASK_INFILE" "$EWMS_TASK_OUTFILE"'""",
        EWMS_PILOT_MAX_CONCURRENT_TASKS="2",
        EWMS_PILOT_TIMEOUT_QUEUE_INCOMING="2",
    )
    pilot = start_pilot(env)
    try:
        deadline = time.monotonic() + 30
        while rmq.count(qout) < 5:
            assert time.monotonic() < deadline, "the pilot produced no outputs"
            time.sleep(0.05)
        rmq.close_connections_of(user, 2)  # its input and output connections
        _, stderr = pilot.communicate(timeout=60)
    finally:
        pilot.kill()
    assert pilot.returncode == 0, stderr
    assert "connection lost" in stderr and "reconnecting" in stderr
    outputs = [e.data for e in rmq.drain(qout)]
    assert set(outputs) == set(events)  # none lost; a few may be duplicated (at-least-once)
    assert len(outputs) <= len(events) + 2  # at most the in-flight events (concurrency 2) run twice
    assert rmq.count(qin) == 0
