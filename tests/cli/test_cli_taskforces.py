"""``ewms retry``, ``ewms logs [--job] [--follow]`` and ``ewms label`` against a real WMS (the TMS's part played
through its real routes)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

from cli_support import RunCLI, workflow_request

from ewms_client import WMSClient
from ewms_dev.processes import wait_for_phase
from wms.auth import Role
from wms.cli.commands_taskforces import Follower, new_text

LIVENESS = 30  # seconds: a generous bound for output to show up on a loaded machine, not a timing


async def submitted_taskforce(client: WMSClient, api_as: Any) -> tuple[str, Any]:
    """A taskforce the TMS submitted as cluster 12 (uuid), and the TMS's client."""
    workflow_id = (await client.submit_workflow(workflow_request()))["workflow"]["workflow_id"]
    await wait_for_phase(lambda: client.taskforces_of(workflow_id), "pending-starter")
    tms = api_as(Role.TMS, "tms-alpha")
    work = await tms.ok("GET", "/v0/tms/pending-starter/taskforces", params={"schedd": "schedd-alpha.test"})
    uuid: str = work["taskforce"]["taskforce_uuid"]
    submitted = {"cluster_id": 12, "n_workers": 3, "submit_dict": {}, "job_event_log_fpath": "/j.jel"}
    await tms.ok("POST", f"/v0/tms/condor-submit/taskforces/{uuid}", submitted)
    return uuid, tms


def job(job_id: str, out: str, *, ended: float | None = None, error: str = "", code: int | None = None) -> dict:
    return {
        "job_id": job_id,
        "stdout_tail": out,
        "stderr_tail": "",
        "task_error": error,
        "exit_code": code,
        "ended_ts": ended,
    }


async def test_retry_links_both_taskforces(ewms: RunCLI, client: WMSClient, api_as) -> None:
    uuid, tms = await submitted_taskforce(client, api_as)
    run = await ewms("retry", uuid)
    assert run.code == 1 and run.err.startswith("error: 409 Conflict: ") and "has not failed" in run.err

    report = {"compound_statuses_by_taskforce": {uuid: {"HELD: memory": {"Tasking": 3}}}}
    await tms.ok("POST", "/v0/tms/statuses/taskforces", report)
    run = await ewms("retry", uuid)
    assert run.code == 0, run.err
    found = re.fullmatch(rf"taskforce {uuid} retried as (TF-\S+) at test-alpha: 3 workers, pre-launch\n", run.out)
    assert found, run.out
    new_uuid = found.group(1)
    new = await client.get_taskforce(new_uuid)
    old = await client.get_taskforce(uuid)
    assert new["retry_of"] == uuid and new["retried_as"] is None
    assert old["retried_as"] == new_uuid and old["retry_of"] is None and old["phase"] == "pending-stopper"

    run = await ewms("retry", uuid, "--json")
    assert run.code == 1 and f"already retried as {new_uuid}" in run.err
    run = await ewms("query", "taskforces", "--filter", json.dumps({"retry_of": uuid}), "--json")
    assert [tf["taskforce_uuid"] for tf in json.loads(run.out)] == [new_uuid]


async def test_logs_of_running_and_ended_jobs(ewms: RunCLI, client: WMSClient, api_as) -> None:
    uuid, tms = await submitted_taskforce(client, api_as)
    run = await ewms("logs", uuid)
    assert run.code == 0 and run.out == "" and run.err == f"no output of any job of {uuid} yet\n"

    jobs = [job("12.0", "one\ntwo\n"), job("12.1", "done\n", ended=1e9, code=3, error="task failed: boom")]
    await tms.ok("POST", f"/v0/tms/logs/taskforces/{uuid}", {"jobs": jobs})
    run = await ewms("logs", uuid)
    assert run.code == 0, run.err
    assert run.out.startswith("=== job 12.0: running ===\n--- stdout ---\none\ntwo\n=== job 12.1: ended ")
    assert run.out.endswith(", exit code 3 ===\n--- stdout ---\ndone\n--- task error ---\ntask failed: boom\n")
    run = await ewms("logs", uuid, "--job", "1")
    assert run.out.startswith("=== job 12.1: ended ") and "12.0" not in run.out
    run = await ewms("logs", uuid, "--job", "12.0", "--json")
    assert json.loads(run.out) == [jobs[0]]
    late = {"jobs": [job("12.1", "stale running tail\n"), job("12.2", "new\n")]}  # after 12.1's end
    await tms.ok("POST", f"/v0/tms/logs/taskforces/{uuid}", late)
    run = await ewms("logs", uuid, "--json")
    assert json.loads(run.out) == [jobs[0], jobs[1], late["jobs"][1]]  # the end's record stays
    run = await ewms("logs", uuid, "--job", "7")
    assert run.code == 0 and run.err == f"no output of job 7 of {uuid} yet\n"
    run = await ewms("logs", "TF-0-00000000-00000000-00000000")
    assert run.code == 1 and run.err.startswith("error: 404 Not Found: ")


async def test_logs_follow_prints_output_as_it_comes(wms_server, token: str, client: WMSClient, api_as) -> None:
    uuid, tms = await submitted_taskforce(client, api_as)
    await tms.ok("POST", f"/v0/tms/logs/taskforces/{uuid}", {"jobs": [job("12.0", "one\n")]})
    ewms = Path(sys.executable).with_name("ewms")
    argv = ["--url", wms_server.url, "--token", token, "logs", uuid, "--follow", "0.2"]
    proc = await asyncio.create_subprocess_exec(ewms, *argv, stdout=PIPE, stderr=PIPE)
    assert proc.stdout is not None

    async def line() -> str:
        return (await asyncio.wait_for(proc.stdout.readline(), LIVENESS)).decode()  # type: ignore[union-attr]

    try:
        assert [await line(), await line(), await line()] == [
            "=== job 12.0: running ===\n",
            "--- stdout ---\n",
            "one\n",
        ]
        await tms.ok("POST", f"/v0/tms/logs/taskforces/{uuid}", {"jobs": [job("12.0", "one\ntwo\n")]})
        assert await line() == "[12.0 stdout] two\n"
        await tms.ok(
            "POST", f"/v0/tms/logs/taskforces/{uuid}", {"jobs": [job("12.0", "two\nend\n", ended=1e9, code=0)]}
        )
        assert await line() == "[12.0 stdout] end\n"
        assert (await line()).startswith("=== job 12.0: ended ")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), LIVENESS)
    assert proc.returncode == 130 and err == b"error: interrupted\n"


def test_new_text_after_the_longest_overlap() -> None:
    assert new_text("", "a\n") == "a\n"
    assert new_text("a\nb\n", "a\nb\nc\n") == "c\n"
    assert new_text("x\ny\ny\n", "y\ny\ny\n") == "y\n"  # the tail moved on by one line: only that line is new
    assert new_text("a\nb\n", "a\nb\n") == ""
    assert new_text("old\n", "new\n") == "[...]\nnew\n"
    assert new_text("ab", "bab") == "ab" and new_text("aab", "abx") == "x"
    follower = Follower()
    assert follower.update([job("1.0", "")]) == "=== job 1.0: running ===\n"
    assert follower.update([job("1.0", "", error="e")]) == "--- 1.0 task error ---\ne\n"


async def test_label_sets_and_removes(ewms: RunCLI, client: WMSClient) -> None:
    workflow_id = (await client.submit_workflow(workflow_request(labels={"draft": "yes"})))["workflow"]["workflow_id"]
    run = await ewms("label", workflow_id, "campaign=2026a", "note=a=b", "--remove", "draft")
    assert run.code == 0, run.err
    assert run.out == f"workflow {workflow_id} labels: campaign=2026a note=a=b\n"
    assert (await client.get_workflow(workflow_id))["labels"] == {"campaign": "2026a", "note": "a=b"}
    run = await ewms("label", workflow_id, "--remove", "campaign", "--remove", "note", "--json")
    assert json.loads(run.out)["labels"] == {}

    run = await ewms("label", workflow_id, "novalue")
    assert run.code == 2 and run.err.startswith("error: expected KEY=VALUE, got 'novalue'")
    run = await ewms("label", workflow_id)
    assert run.code == 2 and "nothing to change" in run.err
    run = await ewms("label", workflow_id, "bad key=1")
    assert run.code == 1 and run.err.startswith("error: 400 Bad Request: "), run.err
