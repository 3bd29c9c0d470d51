"""Failed events, not failed pilots: a failed task's event goes with its error to the failed-events queue."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from pilot_helpers import Broker, last_values, queue_env, run_pilot, statuses

from ewms_wire.chirp import ChirpAttr

EnvFactory = Callable[..., dict[str, str]]
# poison inputs (containing "poison") fail with exit code 3 and a message on stderr; the others are copied
POISONABLE = """sh -c 'if grep -q poison "$EWMS_TASK_INFILE"; then \
echo "cannot digest $(cat "$EWMS_TASK_INFILE")" >&2; exit 3; fi; cp "$EWMS_TASK_INFILE" "$EWMS_TASK_OUTFILE"'"""


def test_poison_events_go_to_the_failed_events_queue_and_the_pilot_goes_on(
    rmq: Broker, pilot_env: EnvFactory, tmp_path: Path
) -> None:
    qin, qout, qfail = rmq.new_queues(3)
    events = [f"poison-{i}" if i in (3, 9, 15) else f"good-{i}" for i in range(20)]
    rmq.publish(qin, events)
    env = pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS=POISONABLE, EWMS_PILOT_MAX_CONCURRENT_TASKS="2")
    env.update(queue_env(rmq, "FAILED", [qfail]))
    result = run_pilot(env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(e.data for e in rmq.drain(qout)) == sorted(e for e in events if e.startswith("good"))
    assert rmq.count(qin) == 0

    failed = sorted(rmq.drain(qfail), key=lambda e: str(e.data))
    assert [e.data for e in failed] == ["poison-15", "poison-3", "poison-9"]  # the inputs' data, unchanged
    for event in failed:
        record = event.headers["ewms-failed"]
        assert record["kind"] == "TaskExitError" and record["exit_code"] == 3
        assert record["stderr_tail"] == f"cannot digest {event.data}"
        assert record["error"] == f"task failed (exit code 3): cannot digest {event.data}"
        assert record["input_queue"] == qin and record["job"] == "7.3" and ":" in record["pilot"]

    jel = tmp_path / "pilot.jel"
    assert statuses(jel)[-1] == "Done"
    final = last_values(jel)
    counters = (final[ChirpAttr.TASKS_TOTAL], final[ChirpAttr.TASKS_SUCCESS], final[ChirpAttr.TASKS_FAILED])
    assert counters == (20, 17, 3)  # exact: sent = done + failed


def test_an_input_that_is_not_an_envelope_is_kept_whole(rmq: Broker, pilot_env: EnvFactory) -> None:
    qin, qout, qfail = rmq.new_queues(3)
    rmq.publish_raw(qin, b"not zstd json")
    env = pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS="cp {{INFILE}} {{OUTFILE}}")
    env.update(queue_env(rmq, "FAILED", [qfail]))
    assert run_pilot(env).returncode == 0
    (failed,) = rmq.drain(qfail)
    record = failed.headers["ewms-failed"]
    assert failed.data is None and record["kind"] == "TaskInputError" and record["exit_code"] is None
    assert base64.b64decode(record["raw_body_base64"]) == b"not zstd json"


def test_a_pilot_that_fails_most_tasks_stops_past_the_failure_rate(
    rmq: Broker, pilot_env: EnvFactory, tmp_path: Path
) -> None:
    qin, qout, qfail = rmq.new_queues(3)
    rmq.publish(qin, [f"poison-{i}" for i in range(12)])
    env = pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS=POISONABLE)  # defaults: 5 failures, above 50 %
    env.update(queue_env(rmq, "FAILED", [qfail]))
    result = run_pilot(env)
    assert result.returncode == 1
    assert len(rmq.drain(qfail)) == 5 and rmq.count(qin) == 7
    final = last_values(tmp_path / "pilot.jel")
    assert (final[ChirpAttr.TASKS_TOTAL], final[ChirpAttr.TASKS_FAILED]) == (5, 5)
    assert str(final[ChirpAttr.ERROR]).startswith("stopped after 5 failed task(s) out of the last 5 (more than 50%)")


def test_the_failure_rate_is_over_a_window_of_recent_tasks(rmq: Broker, pilot_env: EnvFactory) -> None:
    events = [f"poison-{i}" if i % 2 else f"good-{i}" for i in range(12)]  # every other task fails

    def run(max_fraction: str) -> tuple[int, str]:
        qin, qout, qfail = rmq.new_queues(3)
        rmq.publish(qin, events)
        env = pilot_env(
            [qin],
            [qout],
            EWMS_PILOT_TASK_ARGS=POISONABLE,
            EWMS_PILOT_FAILURE_WINDOW="4",
            EWMS_PILOT_FAILURE_MIN_COUNT="2",
            EWMS_PILOT_FAILURE_MAX_FRACTION=max_fraction,
        )
        env.update(queue_env(rmq, "FAILED", [qfail]))
        result = run_pilot(env)
        return result.returncode, result.stderr

    returncode, stderr = run("0.5")  # half of every window of 4 fails: not above 50 %
    assert returncode == 0, stderr[-3000:]
    returncode, stderr = run("0.4")
    assert returncode == 1
    assert "stopped after 2 failed task(s) out of the last 4 (more than 40%)" in stderr
