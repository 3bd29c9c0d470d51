"""Events in, outputs out: ``python -m pilot`` against the private broker with per-queue tokens."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mqclient
import pytest
from pilot_helpers import PILOT_TIMEOUT, Broker, last_values, mint_token, run_pilot, start_pilot, statuses

from ewms_wire.chirp import ChirpAttr

TASKS = Path(__file__).parent / "tasks"
EnvFactory = Callable[..., dict[str, str]]


async def test_text_events_sent_and_read_with_oms_mqclient(rmq: Broker, pilot_env: EnvFactory, tmp_path: Path) -> None:
    qin, qout = rmq.new_queues(2)
    sender = mqclient.Queue("rabbitmq", address=rmq.address, name=qin, auth_token=mint_token(rmq.key, [qin]))
    async with sender.open_pub() as pub:
        for i in range(6):
            await pub.send(f"event {i}")

    env = pilot_env(
        [qin], [qout], EWMS_PILOT_TASK_ARGS="""sh -c 'tr a-z A-Z < "$EWMS_TASK_INFILE" > "$EWMS_TASK_OUTFILE"'"""
    )
    result = await asyncio.to_thread(run_pilot, env)
    assert result.returncode == 0, result.stderr

    reader = mqclient.Queue(
        "rabbitmq", address=rmq.address, name=qout, auth_token=mint_token(rmq.key, [qout]), timeout=1
    )
    async with reader.open_sub() as sub:
        received = [message async for message in sub]
    assert sorted(received) == [f"EVENT {i}" for i in range(6)]
    assert rmq.count(qin) == 0

    jel = tmp_path / "pilot.jel"
    assert statuses(jel) == ["Started", "AwaitingFirstMessage", "Tasking", "PendingRemainingTasks", "Done"]
    final = last_values(jel)
    assert (final[ChirpAttr.TASKS_TOTAL], final[ChirpAttr.TASKS_SUCCESS], final[ChirpAttr.TASKS_FAILED]) == (6, 6, 0)


def test_json_events(rmq: Broker, pilot_env: EnvFactory) -> None:
    qin, qout = rmq.new_queues(2)
    rmq.publish(qin, [{"n": n} for n in range(5)])
    env = pilot_env(
        [qin],
        [qout],
        EWMS_PILOT_TASK_ARGS=f"{sys.executable} {TASKS / 'square.py'} {{{{INFILE}}}} {{{{OUTFILE}}}}",
        EWMS_PILOT_INFILE_EXT=".json",
        EWMS_PILOT_OUTFILE_EXT="json",
    )
    result = run_pilot(env)
    assert result.returncode == 0, result.stderr
    outputs = sorted((e.data for e in rmq.drain(qout)), key=lambda d: d["n"])
    assert outputs == [{"n": n, "square": n * n} for n in range(5)]


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = best = 0
    for _, step in points:
        running += step
        best = max(best, running)
    return best


@pytest.mark.parametrize("concurrency", [1, 4])
def test_concurrency_runs_that_many_tasks_at_once(rmq: Broker, pilot_env: EnvFactory, concurrency: int) -> None:
    qin, qout = rmq.new_queues(2)
    rmq.publish(qin, [f"e{i}" for i in range(6)])
    task = """sh -c 'date +%s.%N > "$EWMS_TASK_OUTFILE"; sleep 0.3; date +%s.%N >> "$EWMS_TASK_OUTFILE"'"""
    env = pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS=task, EWMS_PILOT_MAX_CONCURRENT_TASKS=str(concurrency))
    result = run_pilot(env)
    assert result.returncode == 0, result.stderr
    intervals = [(float(start), float(end)) for start, end in (e.data.split() for e in rmq.drain(qout))]
    assert len(intervals) == 6
    assert _max_overlap(intervals) == concurrency


def test_several_input_and_output_queues(rmq: Broker, pilot_env: EnvFactory) -> None:
    in_a, in_b, out_a, out_b = rmq.new_queues(4)
    rmq.publish(in_a, ["a0", "a1", "a2"])
    rmq.publish(in_b, ["b0", "b1"])
    env = pilot_env([in_a, in_b], [out_a, out_b], EWMS_PILOT_TASK_ARGS="cp {{INFILE}} {{OUTFILE}}")
    result = run_pilot(env)
    assert result.returncode == 0, result.stderr
    expected = ["a0", "a1", "a2", "b0", "b1"]
    assert sorted(e.data for e in rmq.drain(out_a)) == expected
    assert sorted(e.data for e in rmq.drain(out_b)) == expected
    assert rmq.count(in_a) == rmq.count(in_b) == 0


def test_task_without_output_is_acked_and_sends_nothing(rmq: Broker, pilot_env: EnvFactory, tmp_path: Path) -> None:
    qin, qout = rmq.new_queues(2)
    rmq.publish(qin, ["x", "y", "z"])
    result = run_pilot(pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS="true"))
    assert result.returncode == 0, result.stderr
    assert rmq.count(qin) == 0 and rmq.count(qout) == 0
    assert last_values(tmp_path / "pilot.jel")[ChirpAttr.TASKS_SUCCESS] == 3


def test_docker_runner_end_to_end_with_a_stand_in_docker(
    rmq: Broker, pilot_env: EnvFactory, tmp_path: Path, fake_bin: Callable[[str, str], Path]
) -> None:
    log = tmp_path / "docker.log"
    bin_dir = fake_bin("docker", f'printf "%s\\n" "$*" >> {log}\n')  # records its arguments, exits 0
    qin, qout = rmq.new_queues(2)
    rmq.publish(qin, ["one"])
    env = pilot_env(
        [qin],
        [qout],
        PATH=f"{bin_dir}:/usr/bin:/bin",
        _EWMS_PILOT_CONTAINER_PLATFORM="docker",
        EWMS_PILOT_TASK_IMAGE="org/task:1",
        EWMS_PILOT_TASK_ARGS="run.sh {{INFILE}} {{OUTFILE}}",
    )
    result = run_pilot(env)
    assert result.returncode == 0, result.stderr
    inspect, run = log.read_text().splitlines()
    assert inspect == "image inspect org/task:1"
    hub = tmp_path / "work" / "ewms-pilot-data" / "data-hub"
    assert run.startswith("run --rm --mount type=bind,source=")
    assert f"--mount type=bind,source={hub},target=/ewms-pilot-data/data-hub" in run
    assert run.endswith(" org/task:1 run.sh /ewms-pilot-data/task-io/infile-" + run.split("infile-")[-1])
    assert rmq.count(qin) == 0  # the stand-in wrote no output: acked, nothing sent


# lists its I/O directory into the output, then leaves junk behind
LIST_IO_DIR = """sh -c 'd=${EWMS_TASK_INFILE%/*}; ls "$d" > "$EWMS_TASK_OUTFILE"; mkdir "$d/junk"; touch "$d/junk/f"'"""


def test_each_task_sees_only_its_own_files(rmq: Broker, pilot_env: EnvFactory, tmp_path: Path) -> None:
    qin, qout = rmq.new_queues(2)
    rmq.publish(qin, ["a", "b", "c"])
    result = run_pilot(pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS=LIST_IO_DIR))
    assert result.returncode == 0, result.stderr
    for listing in (e.data.split() for e in rmq.drain(qout)):
        assert [name.split("-")[0] for name in listing] == ["infile", "outfile", "task"]  # no junk of earlier tasks
    assert list((tmp_path / "work" / "ewms-pilot-data" / "task-io-0").iterdir()) == []


def test_a_task_that_removes_its_own_directory_does_not_fail_the_next_event(rmq: Broker, pilot_env: EnvFactory) -> None:
    qin, qout = rmq.new_queues(2)
    rmq.publish(qin, ["rm", "b", "c"])
    task = """sh -c 'if grep -q rm "$0"; then rm -r "${0%/*}"; else cp "$0" "$1"; fi' {{INFILE}} {{OUTFILE}}"""
    result = run_pilot(pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS=task))
    assert result.returncode == 0, result.stderr
    assert sorted(e.data for e in rmq.drain(qout)) == ["b", "c"]
    assert "WARNING" not in result.stderr and "0 failed" in result.stderr


def test_after_the_first_event_the_pilot_idles_out_on_the_short_timeout(
    rmq: Broker, pilot_env: EnvFactory, tmp_path: Path
) -> None:
    qin, qout = rmq.new_queues(2)
    env = pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS="cp {{INFILE}} {{OUTFILE}}")
    env["EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE"] = "600"  # far beyond the wait below
    pilot = start_pilot(env)
    try:
        for _ in range(1200):  # liveness bound, not a timing target
            if pilot.poll() is None and "AwaitingFirstMessage" in _statuses_so_far(tmp_path / "pilot.jel"):
                break
            time.sleep(0.05)
        time.sleep(0.5)  # the pilot is waiting on the long first-event timeout now
        rmq.publish(qin, ["a", "b"])
        code = pilot.wait(timeout=PILOT_TIMEOUT)  # liveness bound: 1 s idle after the events, not 600
    finally:
        pilot.kill()
        stderr = pilot.communicate()[1]
    assert code == 0, stderr
    assert sorted(e.data for e in rmq.drain(qout)) == ["a", "b"]
    assert statuses(tmp_path / "pilot.jel")[-1] == "Done"


def _statuses_so_far(jel: Path) -> list[object]:
    return list(statuses(jel)) if jel.exists() else []


def test_kept_task_files_get_a_directory_per_event(rmq: Broker, pilot_env: EnvFactory, tmp_path: Path) -> None:
    qin, qout = rmq.new_queues(2)
    rmq.publish(qin, ["a", "b"])
    env = pilot_env([qin], [qout], EWMS_PILOT_TASK_ARGS=LIST_IO_DIR, EWMS_PILOT_KEEP_ALL_TASK_FILES="true")
    assert run_pilot(env).returncode == 0
    data_dir = tmp_path / "work" / "ewms-pilot-data"
    kept = sorted(d for d in data_dir.iterdir() if d.name not in ("data-hub", "task-io-0"))
    assert len(kept) == 2
    for event_dir in kept:
        names = sorted(p.name.split("-")[0] for p in event_dir.iterdir())
        assert names == ["infile", "junk", "outfile", "task", "task"]  # task-stderr.txt and task-stdout.txt
