"""Failing tasks, the stop-after-N rule, tolerated error kinds, task timeouts and the init task."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pilot_helpers import (
    Broker,
    FakeChirpServer,
    chirps,
    last_values,
    mint_token,
    run_pilot,
    start_pilot,
    statuses,
)

from ewms_wire.chirp import ChirpAttr, parse_chirp

EnvFactory = Callable[..., dict[str, str]]
FAIL = """sh -c 'echo "bad input" >&2; echo boom >&2; exit 3'"""


def test_failed_tasks_are_requeued_and_stop_the_pilot_after_n(
    rmq: Broker, pilot_env: EnvFactory, tmp_path: Path
) -> None:
    qin, qout = rmq.new_queues(2)
    rmq.publish(qin, [f"e{i}" for i in range(5)])
    env = pilot_env(
        [qin],
        [qout],
        EWMS_PILOT_TASK_ARGS=FAIL,
        EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR="true",  # upstream's rule
        EWMS_PILOT_MAX_TASK_FAILURES="2",
    )
    result = run_pilot(env)
    assert result.returncode == 1
    assert "stopped after 2 failed task(s); last error: task failed (exit code 3): bad input\nboom" in result.stderr
    assert rmq.count(qin) == 5 and rmq.count(qout) == 0  # nacked events went back to the queue

    jel = tmp_path / "pilot.jel"
    assert statuses(jel)[-3:] == ["Tasking", "PendingRemainingTasks", "FatalError"]
    final = last_values(jel)
    assert (final[ChirpAttr.TASKS_TOTAL], final[ChirpAttr.TASKS_FAILED], final[ChirpAttr.TASKS_SUCCESS]) == (2, 2, 0)
    assert str(final[ChirpAttr.ERROR]).startswith("stopped after 2 failed task(s)")
    task_errors = [v for a, v in chirps(jel) if a is ChirpAttr.ERROR]
    assert task_errors[0] == "task failed (exit code 3): bad input\nboom"


def test_tolerated_errors_do_not_stop_the_pilot_and_events_are_redelivered(
    rmq: Broker, pilot_env: EnvFactory, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    # fails the first time it sees an event, succeeds on the redelivery
    task = f"""sh -c 'm={marks}/$(cat "$EWMS_TASK_INFILE"); [ -e "$m" ] || {{ touch "$m"; exit 3; }}; \
cp "$EWMS_TASK_INFILE" "$EWMS_TASK_OUTFILE"'"""
    qin, qout = rmq.new_queues(2)
    rmq.publish(qin, ["a", "b", "c", "d"])
    env = pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS=task, EWMS_PILOT_OKAY_ERRORS="TaskExitError,TaskTimeoutError")
    result = run_pilot(env)
    assert result.returncode == 0, result.stderr
    assert sorted(e.data for e in rmq.drain(qout)) == ["a", "b", "c", "d"]
    final = last_values(tmp_path / "pilot.jel")
    assert (final[ChirpAttr.TASKS_FAILED], final[ChirpAttr.TASKS_SUCCESS]) == (4, 4)
    assert statuses(tmp_path / "pilot.jel")[-1] == "Done"


def test_task_timeout(rmq: Broker, pilot_env: EnvFactory, tmp_path: Path) -> None:
    qin, qout = rmq.new_queues(2)
    rmq.publish(qin, ["slow"])
    started = time.monotonic()
    env = pilot_env(
        [qin],
        [qout],
        EWMS_PILOT_TASK_ARGS="sleep 300",
        EWMS_PILOT_TASK_TIMEOUT="0.5",
        EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR="true",
    )
    result = run_pilot(env)
    assert result.returncode == 1
    assert time.monotonic() - started < 120, "liveness bound, not a timing target: the 300 s task was not waited for"
    assert "TaskTimeoutError: task timed out after 0.5s (requeued)" in result.stderr
    assert rmq.count(qin) == 1
    errors = [v for a, v in chirps(tmp_path / "pilot.jel") if a is ChirpAttr.ERROR]
    assert errors[0] == "task timed out after 0.5s"


def test_init_task_prepares_the_data_hub_before_the_first_event(
    rmq: Broker, pilot_env: EnvFactory, tmp_path: Path
) -> None:
    qin, qout = rmq.new_queues(2)
    rmq.publish(qin, ["event"])
    env = pilot_env(
        [qin],
        [qout],
        EWMS_PILOT_INIT_ARGS="""sh -c 'echo "$GREETING" > "$0"' {{DATA_HUB}}/init.txt""",
        EWMS_PILOT_INIT_ENV_JSON='{"GREETING": "hello from init"}',
        EWMS_PILOT_INIT_TIMEOUT="10",
        EWMS_PILOT_TASK_ARGS="""sh -c 'cat "$EWMS_TASK_DATA_HUB_DIR/init.txt" "$EWMS_TASK_INFILE" \
> "$EWMS_TASK_OUTFILE"'""",
    )
    result = run_pilot(env)
    assert result.returncode == 0, result.stderr
    assert [e.data for e in rmq.drain(qout)] == ["hello from init\nevent"]
    assert statuses(tmp_path / "pilot.jel")[:3] == ["Started", "RunningInitCommand", "AwaitingFirstMessage"]


@pytest.fixture
def chirp_config(tmp_path: Path) -> Iterator[tuple[FakeChirpServer, Path]]:
    server = FakeChirpServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = tmp_path / ".chirp.config"
    config.write_text(f"127.0.0.1 {server.server_address[1]} {server.cookie}\n")
    yield server, config
    server.shutdown()
    server.server_close()


def test_init_task_failure_stops_the_pilot_before_consuming(
    rmq: Broker, pilot_env: EnvFactory, chirp_config: tuple[FakeChirpServer, Path]
) -> None:
    server, config_file = chirp_config
    qin, qout = rmq.new_queues(2)
    rmq.publish(qin, ["untouched"])
    env = pilot_env(
        [qin],
        [qout],
        EWMS_PILOT_INIT_ARGS="""sh -c 'echo "no licence" >&2; exit 4'""",
        EWMS_PILOT_TASK_ARGS="cp {{INFILE}} {{OUTFILE}}",
        EWMS_PILOT_HTCHIRP="True",
        EWMS_PILOT_HTCHIRP_DEST="JOB_EVENT_LOG",
        _CONDOR_CHIRP_CONFIG=str(config_file),
        _EWMS_PILOT_JOB_EVENT_LOG="",  # report through HTChirp only, as inside HTCondor
    )
    result = run_pilot(env)
    assert result.returncode == 1
    assert rmq.count(qin) == 1
    reported = [chirp for chirp in map(parse_chirp, server.lines) if chirp is not None]
    assert [v for a, v in reported if a is ChirpAttr.STATUS] == ["Started", "RunningInitCommand", "FatalError"]
    assert (ChirpAttr.ERROR, "init task failed (exit code 4): no licence") in reported


def test_sigterm_returns_the_running_event_and_reports_no_task_error(
    rmq: Broker, pilot_env: EnvFactory, tmp_path: Path
) -> None:
    qin, qout = rmq.new_queues(2)
    rmq.publish(qin, ["long"])
    jel = tmp_path / "pilot.jel"
    pilot = start_pilot(pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS="sleep 30"))
    try:
        deadline = time.monotonic() + 20
        while not (jel.exists() and "Tasking" in statuses(jel)):
            assert time.monotonic() < deadline, "the pilot never started tasking"
            time.sleep(0.05)
        pilot.send_signal(signal.SIGTERM)
        _, stderr = pilot.communicate(timeout=20)
    finally:
        pilot.kill()
    assert pilot.returncode == 128 + signal.SIGTERM, stderr
    assert rmq.count(qin) == 1  # the cancelled task's event went back to the queue
    assert statuses(jel)[-1] == "PendingRemainingTasks"
    assert ChirpAttr.ERROR not in last_values(jel)  # a requested stop (job removal) is not a task error


def test_a_refused_token_is_fatal_at_once(rmq: Broker, pilot_env: EnvFactory, tmp_path: Path) -> None:
    qin, qout = rmq.new_queues(2)
    env = pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS="true", EWMS_PILOT_RECONNECT_TIMEOUT="600")
    env["EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN"] = mint_token("not-the-broker-key-" + "x" * 16, [qin])
    result = run_pilot(env)  # its timeout is a liveness bound far below the 600 s a retrying pilot would take
    assert result.returncode == 1
    assert "retrying" not in result.stderr  # not retried for EWMS_PILOT_RECONNECT_TIMEOUT
    error = str(last_values(tmp_path / "pilot.jel")[ChirpAttr.ERROR])
    assert error.startswith(f"input queue {qin} at amqp://{rmq.address}/%2F: the broker refused the pilot")
