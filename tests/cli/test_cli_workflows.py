"""``ewms submit``, ``finish``, ``abort`` and ``add-workers`` against a real WMS."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_support import RunCLI, workflow_request, write_json, write_yaml

from ewms_client import WMSClient
from wms.cli.main import main


async def test_submit_yaml_prints_ids(ewms: RunCLI, client: WMSClient, tmp_path: Path) -> None:
    run = await ewms("submit", str(write_yaml(tmp_path)))
    assert run.code == 0, run.err
    workflow_id = re.fullmatch(r"workflow (WF-\S+) \(priority 50\)", run.out.splitlines()[0]).group(1)  # type: ignore[union-attr]
    assert re.search(r"^  task TK-\S+: /cvmfs/example/image:1.0, in -> out$", run.out, re.M)
    locations = re.findall(r"^    taskforce TF-\S+ at (\S+): 3 workers$", run.out, re.M)
    assert sorted(locations) == ["test-alpha", "test-beta"]
    assert f"ewms status {workflow_id}" in run.err
    assert (await client.get_workflow(workflow_id))["owner"] == "alice"


async def test_names_and_queue_aliases_are_shown(ewms: RunCLI, client: WMSClient, tmp_path: Path) -> None:
    request = workflow_request(name="nightly copy")
    request["tasks"][0].update(name="copier", n_workers=1)
    run = await ewms("submit", "-", stdin=json.dumps(request))
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    workflow_id = re.fullmatch(r'workflow (WF-\S+) "nightly copy" \(priority 50\)', lines[0]).group(1)  # type: ignore[union-attr]
    assert re.fullmatch(r'  task TK-\S+ "copier": /cvmfs/example/image:1.0, in -> out', lines[1])
    assert lines[2].endswith(": 1 worker") and lines[3].endswith(": 1 worker")

    workflow = await client.get_workflow(workflow_id)
    assert workflow["name"] == "nightly copy"
    run = await ewms("query", "task-directives", "--filter", json.dumps({"workflow_id": workflow_id}))
    header, row = run.out.splitlines()
    assert header.split()[:6] == ["TASK_ID", "NAME", "WORKFLOW_ID", "CLUSTER_LOCATIONS", "INPUT_QUEUE_ALIASES",
                                  "OUTPUT_QUEUE_ALIASES"]  # fmt: skip
    assert row.split()[1:6] == ["copier", workflow_id, '["test-alpha","test-beta"]', '["in"]', '["out"]']
    run = await ewms("query", "workflows", "--filter", json.dumps({"name": "nightly copy"}), "--projection", "name")
    assert run.out.splitlines()[1:] == ["nightly copy"]


async def test_did_you_mean(ewms: RunCLI) -> None:
    request = workflow_request()
    request["tasks"][0]["n_worker"] = 2
    run = await ewms("submit", "-", stdin=json.dumps(request))
    assert run.code == 1 and "'n_worker' was unexpected) (did you mean 'n_workers' for 'n_worker'?)" in run.err

    request = workflow_request(public_queue_aliases=["in", "otu"])
    run = await ewms("submit", "-", stdin=json.dumps(request))
    assert run.code == 1 and run.err == (
        "error: 400 Bad Request: public_queue_aliases not used by any task: otu (did you mean 'out'?)\n"
    )


async def test_submit_json_file_and_stdin_with_json_output(ewms: RunCLI, tmp_path: Path) -> None:
    run = await ewms("submit", str(write_json(tmp_path, priority=7)), "--json")
    assert run.code == 0, run.err
    created = json.loads(run.out)
    assert created["workflow"]["priority"] == 7 and len(created["taskforces"]) == 2
    assert {tf["phase"] for tf in created["taskforces"]} == {"pre-mq-activation"}

    run = await ewms("submit", "-", "--json", stdin=json.dumps(workflow_request()))
    assert run.code == 0, run.err
    assert json.loads(run.out)["workflow"]["workflow_id"] != created["workflow"]["workflow_id"]


async def test_submit_invalid_request_lists_the_server_errors(ewms: RunCLI, tmp_path: Path) -> None:
    run = await ewms("submit", str(write_json(tmp_path, tasks=[], colour="blue")))
    assert run.code == 1 and run.out == ""
    first, *errors = run.err.splitlines()
    assert first == "error: 400 Bad Request: invalid request body"
    assert len(errors) == 2 and all(e.startswith("  - ") for e in errors)
    assert "'colour' was unexpected" in errors[0] and errors[1] == "  - tasks: [] should be non-empty"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.yaml", None, "cannot read"),
        ("broken.yaml", "tasks: [unclosed\n", "is not valid YAML"),
        ("tab.yaml", "tasks:\n\t- a\n", "in PATH, line 2"),
        ("broken.json", '{"tasks": ', "is not valid JSON"),
        ("list.yaml", "- a\n- b\n", "must hold a workflow request"),
    ],
)
def test_unusable_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    assert main(["--url", "http://127.0.0.1:9", "--token", "t", "submit", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") or err.startswith(f"error: cannot read {path}"), err
    assert message.replace("PATH", str(path)) in err and "<unicode string>" not in err


async def test_finish_then_abort(ewms: RunCLI, client: WMSClient) -> None:
    workflow_id = (await client.submit_workflow(workflow_request()))["workflow"]["workflow_id"]
    run = await ewms("finish", workflow_id)
    assert run.code == 0, run.err
    assert run.out == f"workflow {workflow_id} finished: 2 taskforce(s) sent to stop\n"
    run = await ewms("finish", workflow_id, "--json")
    assert json.loads(run.out) == {"workflow_id": workflow_id, "n_taskforces": 0}
    run = await ewms("abort", workflow_id)
    assert run.code == 1 and run.err.startswith("error: 409 Conflict: "), run.err
    assert {tf["phase"] for tf in await client.taskforces_of(workflow_id)} == {"pending-stopper"}

    other = (await client.submit_workflow(workflow_request()))["workflow"]["workflow_id"]
    run = await ewms("abort", other)
    assert run.code == 0 and run.out == f"workflow {other} aborted: 2 taskforce(s) sent to stop\n"
    assert (await client.get_workflow(other))["deactivated"] == "ABORTED"


async def test_add_workers(ewms: RunCLI, client: WMSClient) -> None:
    created = await client.submit_workflow(workflow_request())
    task_id = created["task_directives"][0]["task_id"]
    run = await ewms("add-workers", task_id, "test-beta", "2")  # a location that runs the task's image
    assert run.code == 0, run.err
    uuid = re.fullmatch(r"taskforce (TF-\S+) at test-beta: 2 workers, \S+\n", run.out).group(1)  # type: ignore[union-attr]
    assert (await client.get_taskforce(uuid))["task_id"] == task_id
    assert len(await client.taskforces_of(created["workflow"]["workflow_id"])) == 3

    run = await ewms("add-workers", task_id, "nowhere", "1")
    assert run.code == 1, run.err
    assert run.err.startswith("error: 400 Bad Request: condor cluster location not found: nowhere (known: local, ")
    run = await ewms("add-workers", "TK-0-00000000-00000000", "test-alpha", "1")
    assert run.code == 1 and run.err.startswith("error: 404 Not Found: "), run.err


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["add-workers", "TK-1", "local", "0"])
    assert info.value.code == 2 and "expected a positive integer" in capsys.readouterr().err
    assert main([]) == 2 and "exit codes:" in capsys.readouterr().err
