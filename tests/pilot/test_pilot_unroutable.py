"""Outputs are never dropped silently: an output queue deleted mid-run stops the pilot and its input is not acked;
a queue deleted while its link is disconnected is not declared again by the reconnection."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

from pilot_helpers import Broker, last_values, queue_env, start_pilot, statuses

from ewms_wire.chirp import ChirpAttr

EnvFactory = Callable[..., dict[str, str]]
COPY_SLOWLY = """sh -c 'sleep 0.2; cp "$EWMS_TASK_INFILE" "$EWMS_TASK_OUTFILE"'"""


def run_until_deleted(
    rmq: Broker, env: dict[str, str], watched: str, deleted: str, then_drop_links_of: str | None = None
) -> tuple[int, str]:
    """Start the pilot, delete ``deleted`` once ``watched`` holds a message (then, with ``then_drop_links_of``,
    force-close that token subject's input and output connections), and wait for the pilot to end."""
    pilot = start_pilot(env)
    try:
        deadline = time.monotonic() + 30  # liveness bound for a loaded machine
        while rmq.count(watched) < 1:
            assert time.monotonic() < deadline, "the pilot produced nothing"
            time.sleep(0.05)
        rmq.delete_queue(deleted)
        if then_drop_links_of is not None:
            rmq.close_connections_of(then_drop_links_of, 2)
        _, stderr = pilot.communicate(timeout=60)
    finally:
        pilot.kill()
    return pilot.returncode, stderr


def test_an_output_queue_deleted_mid_run_stops_the_pilot_without_acking_the_input(
    rmq: Broker, pilot_env: EnvFactory, tmp_path: Path
) -> None:
    qin, qout = rmq.new_queues(2)
    events = [f"e{i:02d}" for i in range(30)]
    rmq.publish(qin, events)
    returncode, stderr = run_until_deleted(rmq, pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS=COPY_SLOWLY), qout, qout)
    assert returncode == 1, stderr
    final = last_values(tmp_path / "pilot.jel")
    done = int(final[ChirpAttr.TASKS_SUCCESS])
    assert 1 <= done < len(events)
    assert rmq.count(qin) == len(events) - done  # the event whose output was returned went back to its queue
    assert (final[ChirpAttr.TASKS_TOTAL], final[ChirpAttr.TASKS_FAILED]) == (done, 0)
    error = str(final[ChirpAttr.ERROR])
    assert f"event from {qin} not acked (returned to its queue)" in error
    assert f"the output to queue {qout} was returned unroutable (312 NO_ROUTE): the queue no longer exists" in error
    assert statuses(tmp_path / "pilot.jel")[-1] == "FatalError"


def test_a_failed_events_queue_deleted_mid_run_stops_the_pilot_without_acking_the_input(
    rmq: Broker, pilot_env: EnvFactory, tmp_path: Path
) -> None:
    qin, qout, qfail = rmq.new_queues(3)
    rmq.publish(qin, [f"e{i:02d}" for i in range(30)])
    env = pilot_env(
        [qin], [qout], EWMS_PILOT_TASK_ARGS="sh -c 'sleep 0.2; exit 3'", EWMS_PILOT_FAILURE_MAX_FRACTION="1"
    )
    env.update(queue_env(rmq, "FAILED", [qfail]))
    returncode, stderr = run_until_deleted(rmq, env, qfail, qfail)
    assert returncode == 1, stderr
    final = last_values(tmp_path / "pilot.jel")
    failed = int(final[ChirpAttr.TASKS_FAILED])
    assert rmq.count(qin) == 30 - failed
    assert final[ChirpAttr.TASKS_TOTAL] == failed
    assert f"the output to queue {qfail} was returned unroutable" in str(final[ChirpAttr.ERROR])


def test_an_output_queue_deleted_while_its_link_reconnects_is_not_recreated(
    rmq: Broker, pilot_env: EnvFactory, tmp_path: Path
) -> None:
    qin, qout = rmq.new_queues(2)
    rmq.publish(qin, ["first"])
    user = f"pilot-gone-{uuid.uuid4().hex[:8]}"  # token subject: lets us close only this pilot's connections
    copy = """sh -c 'cp "$EWMS_TASK_INFILE" "$EWMS_TASK_OUTFILE"'"""
    env = pilot_env([qin], [qout], sub=user, EWMS_PILOT_TASK_ARGS=copy, EWMS_PILOT_TIMEOUT_QUEUE_INCOMING="15")
    # once the one output is out the pilot waits for more input: nothing is in flight when the queue goes
    returncode, stderr = run_until_deleted(rmq, env, qout, qout, then_drop_links_of=user)
    assert returncode == 1, stderr  # it stopped for the lost queue, not after going idle
    assert not rmq.has_queue(qout)  # the reconnection did not declare it again
    error = str(last_values(tmp_path / "pilot.jel")[ChirpAttr.ERROR])
    assert f"output queue {qout} at" in error and "the queue no longer exists (deleted while the pilot ran)" in error
    assert statuses(tmp_path / "pilot.jel")[-1] == "FatalError"
