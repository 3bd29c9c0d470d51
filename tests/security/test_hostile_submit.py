"""A hostile tenant's workflow requests: refused at submit (400 by the schema, 422 by the operator's policy) before
any side effect, with nothing stored and no queue reserved; the harmless forms of the same fields still pass."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from apiclient import Api
from factories import workflow_request

from wms.auth import Role

SETTINGS = {"INPUT_FILE_PREFIXES": "/data/shared", "PILOT_ENV_DENY": "SITE_SECRET,SITE_*"}


@pytest.fixture
async def service(start_wms, make_token):  # type: ignore[no-untyped-def]
    """A WMS with an input-file prefix and an extended pilot-variable deny-list, and alice's client."""
    server = await start_wms(**SETTINGS)
    return server, Api(server.url, make_token(Role.USER, "alice"))


async def _side_effects(server) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    """Counts of everything a workflow creation writes (documents and reserved queues)."""
    db = server.wms.store.db
    return tuple([await db[name].count_documents({}) for name in ("workflows", "taskforces", "mq_groups")])


def _task(mutate: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    request = workflow_request()
    mutate(request["tasks"][0])
    return request


def _pilot(**pilot_config: Any) -> dict[str, Any]:
    return _task(lambda t: t.__setitem__("pilot_config", pilot_config))


def _worker(**changes: Any) -> dict[str, Any]:
    return _task(lambda t: t["worker_config"].update(changes))


async def _refused(service, request: dict[str, Any], status: int) -> str:  # type: ignore[no-untyped-def]
    """POST the request as raw JSON (lone surrogates stay escaped); it must fail with ``status`` and change nothing."""
    server, api = service
    before = await _side_effects(server)
    raw = json.dumps(request).encode()
    headers = {"Content-Type": "application/json"}
    problem = await api.problem("POST", "/v0/workflows", status=status, content=raw, headers=headers)
    assert await _side_effects(server) == before
    return str(problem["detail"])


INPUT_FILES = {
    "host file": "/etc/passwd",
    "key file": "/root/.ewms-data/keys.json",
    "dot-dot escape": "/data/shared/../../etc/shadow",
    "relative": "data/shared/x",
    "prefix look-alike": "/data/shared-other/x",
    "comma split": "/data/shared/a.dat,/etc/passwd",
    "newline": "/data/shared/a.dat\n/etc/passwd",
    "file url": "file:///etc/passwd",
    "ftp url": "ftp://example.org/x",
}


@pytest.mark.parametrize("name", sorted(INPUT_FILES))
async def test_input_files_outside_the_operators_rules_are_refused(service, name: str) -> None:  # type: ignore[no-untyped-def]
    value = INPUT_FILES[name]
    status = 400 if "\n" in value else 422  # a control character never reaches the policy: the schema refuses it
    detail = await _refused(service, _pilot(input_files=[value]), status)
    assert "input_files" in detail


PILOT_ENV_KEYS = {
    "shell injection": "A=1; touch X; B",
    "assignment": "K=1",
    "leading digit": "1X",
    "loader": "LD_PRELOAD",
    "loader audit": "LD_AUDIT",
    "interpreter": "PYTHONPATH",
    "interpreter startup": "PYTHONSTARTUP",
    "path": "PATH",
    "home": "HOME",
    "bash env": "BASH_ENV",
    "pilot control": "_EWMS_PILOT_JOB_EVENT_LOG",
    "status destination": "EWMS_PILOT_HTCHIRP_DEST",
    "queue token": "EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN",
    "operator deny": "SITE_SECRET",
    "operator deny prefix": "SITE_TOKEN",
}


@pytest.mark.parametrize("name", sorted(PILOT_ENV_KEYS))
async def test_pilot_environment_keys_that_are_not_the_users_are_refused(service, name: str) -> None:  # type: ignore[no-untyped-def]
    key = PILOT_ENV_KEYS[name]
    request = _pilot(environment={key: "/tmp/evil.so"})
    status = 400 if not key.isidentifier() or key.startswith("EWMS_PILOT_QUEUE_") else 422
    await _refused(service, request, status)


CONTROL_CHARACTERS = {
    "NUL in task_args": _task(lambda t: t.__setitem__("task_args", "run\x00x")),
    "newline in task_image": _task(lambda t: t.__setitem__("task_image", "/cvmfs/x:1\nqueue 10")),
    "escape in task_env": _task(lambda t: t["task_env"].__setitem__("MODE", "\x1b[2J")),
    "NUL in pilot env value": _pilot(environment={"MY_VAR": "a\x00b"}),
    "NUL in pilot env list": _pilot(environment={"MY_LIST": ["a", "b\x00"]}),
    "lone surrogate in label": workflow_request(labels={"name": "\ud800"}),
    "lone surrogate in task_args": _task(lambda t: t.__setitem__("task_args", "x \udfff")),
    "delete in init_args": _task(lambda t: t.__setitem__("init_args", "a\x7fb")),
    "bad task_env key": _task(lambda t: t["task_env"].__setitem__("A B", "1")),
    "trailing newline in task_image": _task(lambda t: t.__setitem__("task_image", "/cvmfs/x:1\n")),
    "trailing newline in queue alias": workflow_request(public_queue_aliases=["in\n", "out"]),
    "trailing newline in env key": _pilot(environment={"MY_VAR\n": "1"}),
}


@pytest.mark.parametrize("name", sorted(CONTROL_CHARACTERS))
async def test_control_characters_and_lone_surrogates_are_refused_before_any_side_effect(service, name: str) -> None:  # type: ignore[no-untyped-def]
    await _refused(service, copy.deepcopy(CONTROL_CHARACTERS[name]), 400)


SIZES = {
    "petabytes": ("worker_memory", "1P", 400),
    "bytes spelled out": ("worker_memory", "512MBytes", 400),
    "huge disk": ("worker_disk", "99999999T", 422),
    "huge memory": ("worker_memory", "2048G", 422),
    "zero": ("worker_memory", "0", 422),
    "too small": ("worker_disk", "100K", 422),
    "zero bytes": ("worker_disk", 0, 400),
    "negative": ("worker_memory", "-1G", 400),
    "shell words": ("worker_memory", "1G; rm", 400),
}


@pytest.mark.parametrize("name", sorted(SIZES))
async def test_sizes_are_checked_for_units_and_range_at_submit(service, name: str) -> None:  # type: ignore[no-untyped-def]
    field, value, status = SIZES[name]
    detail = await _refused(service, _worker(**{field: value}), status)
    assert field in detail


@pytest.mark.parametrize("tag", ["latest; rm -rf / #", "1.2.3 && id", "x latest", "1.2.3\n", "latest-"])
async def test_pilot_tag_is_anchored_for_every_alternative(service, tag: str) -> None:  # type: ignore[no-untyped-def]
    await _refused(service, _pilot(tag=tag), 400)


REQUIREMENTS = {
    "newline": ("x == 1\nqueue 5", 400),
    "trailing garbage": ("x == 1 ]", 422),
    "unfinished": ("HasGPU &&", 422),
    "two statements": ('a == "b"; c', 422),
    "comment": ("x == 1 # drop the rest", 422),
}


@pytest.mark.parametrize("name", sorted(REQUIREMENTS))
async def test_condor_requirements_must_be_one_classad_expression(service, name: str) -> None:  # type: ignore[no-untyped-def]
    value, status = REQUIREMENTS[name]
    detail = await _refused(service, _worker(condor_requirements=value), status)
    assert "condor_requirements" in detail


@pytest.mark.parametrize(
    "field, image",
    [
        ("task_image", "/cvmfs/icecube.opensciencegrid.org/containers/x:1.0"),
        ("task_image", "docker.io/library/python:3.12"),
        ("init_image", "/srv/images/init.sif@sha256:abc"),
        ("task_image", "relative/dir"),
    ],
)
async def test_local_location_runs_no_images(service, field: str, image: str) -> None:  # type: ignore[no-untyped-def]
    request = workflow_request(locations=("local",))
    request["tasks"][0][field] = image
    detail = await _refused(service, request, 422)
    assert "'local'" in detail and "capabilities: none" in detail


async def test_adding_workers_at_a_location_that_cannot_run_the_task_is_refused(service) -> None:  # type: ignore[no-untyped-def]
    server, api = service
    created = await api.ok("POST", "/v0/workflows", workflow_request(locations=("test-alpha",)))
    task_id = created["task_directives"][0]["task_id"]
    before = await _side_effects(server)
    route, body = f"/v0/task-directives/{task_id}/actions/add-workers", {"cluster_location": "local", "n_workers": 1}
    problem = await api.problem("POST", route, body, status=422)
    assert "'local'" in problem["detail"] and await _side_effects(server) == before
    await api.ok("POST", route, {**body, "cluster_location": "test-beta"})


async def test_the_harmless_forms_still_pass(service) -> None:  # type: ignore[no-untyped-def]
    _, api = service
    task = workflow_request(locations=("test-alpha", "local"))["tasks"][0]
    task["task_image"] = "/opt/venvs/my-task"  # a local directory runs on `local` (the process runner)
    task["pilot_config"] = {
        "tag": "1.2.3",
        "environment": {"MY_SETTING": "it's $HOME; fine", "EWMS_PILOT_TASK_TIMEOUT": 60, "LIST": ["a", "b"]},
        "input_files": ["osdf:///icecube/lut.dat", "https://example.org/a.dat", "/data/shared/./sub/b.dat"],
    }
    task["worker_config"].update(worker_memory="4 GB", worker_disk="2GiB", condor_requirements="HasGPU && Mem > 4")
    other = copy.deepcopy(task)
    other["cluster_locations"] = ["test-beta"]
    other["task_image"] = "/cvmfs/example/image:1.0"
    other["worker_config"].update(worker_memory=1024**3, worker_disk="512M")
    created = await api.ok("POST", "/v0/workflows", {"public_queue_aliases": ["in", "out"], "tasks": [task, other]})
    assert len(created["taskforces"]) == 3
