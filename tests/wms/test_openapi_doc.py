"""Static checks of ``Docs/openapi.json``: a valid OpenAPI 3.1 document that says what the WMS decided.

No server is started; the document is checked as data, with ``openapi-spec-validator``, ``jsonschema`` (over a
``referencing`` registry holding the whole document) and, for a few samples, ``openapi-core``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from factories import SEED_README_REQUEST
from openapi_core import Config, OpenAPI
from openapi_core.deserializing.media_types.util import json_loads
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOC_PATH = Path(__file__).resolve().parents[2] / "Docs" / "openapi.json"
DOC_URI = "urn:ewms-wms:openapi"
PROBLEM = "application/problem+json"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

USER = ("user", "admin")
USER_TMS = ("user", "admin", "system-tms")
TMS = ("system-tms", "admin")
ANY = ("user", "admin", "system-tms")
ADMIN = ("admin",)
PUBLIC = None

# (method, path) -> (roles or PUBLIC, extra error codes beyond 400/401/403/(413)/503)
ROUTES: dict[tuple[str, str], tuple[tuple[str, ...] | None, set[int]]] = {
    ("get", "/"): (PUBLIC, {503}),
    ("get", "/metrics"): (ADMIN, set()),
    ("get", "/schema/openapi"): (ANY, set()),
    ("post", "/workflows"): (USER, {422, 429}),
    ("get", "/workflows/{workflow_id}"): (USER, {404}),
    ("patch", "/workflows/{workflow_id}"): (USER, {404}),
    ("get", "/workflows/{workflow_id}/progress"): (USER, {404}),
    ("post", "/workflows/{workflow_id}/actions/abort"): (USER, {404, 409}),
    ("post", "/workflows/{workflow_id}/actions/finished"): (USER, {404, 409}),
    ("post", "/workflows/{workflow_id}/actions/requeue-failed-events"): (USER, {404, 409, 422}),
    ("post", "/query/workflows"): (USER_TMS, set()),
    ("post", "/query/task-directives"): (USER_TMS, set()),
    ("post", "/query/taskforces"): (USER_TMS, set()),
    ("get", "/task-directives/{task_id}"): (USER, {404}),
    ("post", "/task-directives/{task_id}/actions/add-workers"): (USER_TMS, {404, 422}),
    ("get", "/taskforces/{taskforce_uuid}"): (ANY, {404}),
    ("post", "/taskforces/{taskforce_uuid}/actions/retry"): (USER, {404, 409, 422}),
    ("get", "/taskforces/{taskforce_uuid}/logs"): (ANY, {404}),
    ("post", "/tms/logs/taskforces/{taskforce_uuid}"): (TMS, {404}),
    ("get", "/admin/archive/workflows"): (ADMIN, set()),
    ("get", "/admin/archive/workflows/{workflow_id}"): (ADMIN, {404}),
    ("post", "/admin/archive/purge"): (ADMIN, set()),
    ("get", "/mqs/workflows/{workflow_id}/mq-profiles/public"): (USER, {404}),
    ("post", "/mqs/workflows/{workflow_id}/queues/{queue}/token"): (("pilot",), {404, 409}),
    ("get", "/tms/pending-starter/taskforces"): (TMS, set()),
    ("post", "/tms/condor-submit/taskforces/{taskforce_uuid}"): (TMS, {404, 409}),
    ("post", "/tms/condor-submit/taskforces/{taskforce_uuid}/failed"): (TMS, {404, 409}),
    ("get", "/tms/pending-stopper/taskforces"): (TMS, set()),
    ("post", "/tms/condor-rm/taskforces/{taskforce_uuid}"): (TMS, {404, 409}),
    ("post", "/tms/condor-rm/taskforces/{taskforce_uuid}/failed"): (TMS, {404, 409}),
    ("post", "/tms/condor-complete/taskforces/{taskforce_uuid}"): (TMS, {404, 409}),
    ("post", "/tms/statuses/taskforces"): (TMS, set()),
}

SEED_REQUEST: dict[str, Any] = SEED_README_REQUEST

TASKFORCE: dict[str, Any] = {
    "taskforce_uuid": "TF-6741a2b3-0123abcd-4567ef01-89abcdef",
    "task_id": "TK-6741a2b3-0123abcd-4567ef01",
    "workflow_id": "WF-6741a2b3-0123abcd",
    "timestamp": 1732354227.5,
    "priority": 150,
    "collector": None,
    "schedd": "schedd.example.org",
    "cluster_location": "sub-2",
    "n_workers": 10,
    "pilot_config": {
        "tag": "latest",
        "image_source": "cvmfs",
        "environment": {"A": "x", "B": 2, "C": ["y"]},
        "input_files": [],
    },
    "worker_config": {
        "do_transfer_worker_stdouterr": True,
        "max_worker_runtime": 600,
        "n_cores": 1,
        "priority": 99,
        "worker_disk": "512M",
        "worker_memory": 536870912,
        "condor_requirements": "",
    },
    "cluster_id": 1234,
    "submit_dict": {"executable": "/bin/true", "request_cpus": 1, "+Extra": True, "rank": 1.5},
    "job_event_log_fpath": "/scratch/ewms/jel/2024-11-23.tms.jel",
    "phase": "condor-submit",
    "phase_change_log": [
        {
            "target_phase": "condor-submit",
            "timestamp": 1732354300.0,
            "was_successful": True,
            "source_event_time": None,
            "source_entity": "TMS",
            "context": "",
        }
    ],
    "compound_statuses": {"IDLE": {"null": 5}, "RUNNING": {"Tasking": 3}},
    "top_task_errors": {"task failed (exit code 1): boom": 2},
    "owner": "alice",
    "retry_of": None,
    "retried_as": None,
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return json.loads(DOC_PATH.read_text())


@pytest.fixture(scope="module")
def registry(doc: dict[str, Any]) -> Registry:
    return Registry().with_resource(DOC_URI, Resource(contents=doc, specification=DRAFT202012))


def schema_validator(registry: Registry, name: str) -> jsonschema.Draft202012Validator:
    """A validator for ``components.schemas.<name>`` whose internal ``$ref``s resolve inside the document."""
    return jsonschema.Draft202012Validator(
        {"$ref": f"{DOC_URI}#/components/schemas/{name}"},
        registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref``s until a non-reference object."""
    while "$ref" in node:
        pointer = node["$ref"]
        assert pointer.startswith("#/"), pointer
        target: Any = doc
        for part in pointer[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# ---------------------------------------------------------------------------------------------- document


def test_valid_openapi_31(doc: dict[str, Any]) -> None:
    validate_openapi(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] == "EWMS Workflow Management Service"
    assert doc["info"]["version"] == "0"


def test_security_scheme_and_global_security(doc: dict[str, Any]) -> None:
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    assert doc["security"] == [{"bearerAuth": []}]


def test_every_ref_resolves_and_stands_alone(doc: dict[str, Any]) -> None:
    # openapi-core ignores keywords beside a $ref (e.g. a default), so the document never puts any there
    for node in walk(doc):
        if "$ref" in node:
            assert set(node) == {"$ref"}, node
            resolve(doc, node)


def test_route_census(doc: dict[str, Any]) -> None:
    found = {(method, path) for method, path, _ in operations(doc)}
    assert found == set(ROUTES)
    # one route table, served under both prefixes (upstream's /v1 and the seed documents' /v0); /metrics unversioned
    assert [s["url"] for s in doc["servers"]] == ["/v0", "/v1"]
    for path, item in doc["paths"].items():
        assert not path.startswith(("/v0/", "/v1/")), path
        expected = ["/"] if path == "/metrics" else ["/v0", "/v1"]
        assert [s["url"] for s in item.get("servers", doc["servers"])] == expected


# ---------------------------------------------------------------------------------------------- operations


def test_operation_ids_unique(doc: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("route", sorted(ROUTES), ids=lambda r: f"{r[0].upper()} {r[1]}")
def test_operation(doc: dict[str, Any], route: tuple[str, str]) -> None:
    method, path = route
    roles, extra_errors = ROUTES[route]
    op = doc["paths"][path][method]

    assert op["operationId"] and op["summary"] and op["description"]
    security = op.get("security", doc["security"])
    if roles is PUBLIC:
        assert security == []
        assert op["x-roles"] == []
    else:
        assert security == [{"bearerAuth": []}]
        assert tuple(op["x-roles"]) == roles
        assert f"Roles: {', '.join(roles)}." in op["description"]

    # path parameters are declared and carry an id pattern
    declared = [resolve(doc, p) for p in doc["paths"][path].get("parameters", []) + op.get("parameters", [])]
    for name in re.findall(r"{(\w+)}", path):
        (param,) = [p for p in declared if p["in"] == "path" and p["name"] == name]
        assert param["required"] is True
        assert param["schema"]["type"] == "string" and param["schema"]["pattern"].startswith("^")

    responses = op["responses"]
    assert "200" in responses
    expected = set(extra_errors)
    if roles is not PUBLIC:
        expected |= {400, 401, 403, 503}
        if "requestBody" in op:
            expected.add(413)
    errors = {int(code) for code in responses if int(code) >= 400}
    assert errors == expected
    for code in errors:
        response = resolve(doc, responses[str(code)])
        assert list(response["content"]) == [PROBLEM], (code, path)
        assert response["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/ProblemDetails"}
    for code, response in responses.items():
        if int(code) < 400:
            assert PROBLEM not in resolve(doc, response).get("content", {})


def test_success_media_types(doc: dict[str, Any]) -> None:
    for method, path, op in operations(doc):
        content = op["responses"]["200"]["content"]
        assert list(content) == (["text/plain"] if path == "/metrics" else ["application/json"]), (method, path)


def test_shared_responses(doc: dict[str, Any]) -> None:
    responses = doc["components"]["responses"]
    codes = {
        "BadRequest": 400,
        "Unauthorized": 401,
        "Forbidden": 403,
        "NotFound": 404,
        "Conflict": 409,
        "PayloadTooLarge": 413,
        "UnprocessableEntity": 422,
        "TooManyRequests": 429,
        "ServiceUnavailable": 503,
    }
    assert set(responses) == set(codes)
    assert "Retry-After" in responses["TooManyRequests"]["headers"]


# ---------------------------------------------------------------------------------------------- schemas


def test_component_schemas_are_draft_2020_12(doc: dict[str, Any]) -> None:
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert name


def test_objects_are_closed(doc: dict[str, Any]) -> None:
    for name, schema in doc["components"]["schemas"].items():
        for node in walk(schema):
            if node.get("type") == "object" and "properties" in node and name != "ProblemDetails":
                assert node.get("additionalProperties") is False, name
    assert doc["components"]["schemas"]["ProblemDetails"]["additionalProperties"] is True


@pytest.mark.parametrize("name", ["WorkflowObject", "TaskDirectiveObject", "TaskforceObject"])
def test_partials_mirror_objects(doc: dict[str, Any], name: str) -> None:
    schemas = doc["components"]["schemas"]
    full, part = schemas[name], schemas[name + "Partial"]
    extensions = {k for k, v in full["properties"].items() if v.get("x-ewms-extension")}
    assert set(full["properties"]) - set(full["required"]) <= extensions  # only extensions may be optional
    assert set(part["properties"]) == set(full["properties"])
    assert part["required"] == []


def test_problem_details(registry: Registry) -> None:
    validator = schema_validator(registry, "ProblemDetails")
    validator.validate(
        {
            "type": "about:blank",
            "title": "Not Found",
            "status": 404,
            "detail": "no workflow",
            "code": 404,
            "error": "no workflow",
            "errors": ["x"],
            "anything": 1,
        }
    )
    assert not validator.is_valid({"title": "Not Found", "status": 404, "detail": "x"})


def test_seed_request_is_valid(registry: Registry) -> None:
    schema_validator(registry, "WorkflowRequest").validate(SEED_REQUEST)


def test_full_request_is_valid(registry: Registry) -> None:
    request = copy.deepcopy(SEED_REQUEST)
    request["priority"] = 120
    task = request["tasks"][0]
    task["worker_config"]["condor_requirements"] = "OpSysMajorVer == 9"
    task["pilot_config"] = {
        "tag": "1.2.0",
        "image_source": "auto",
        "environment": {"X": 1, "Y": ["a"]},
        "input_files": ["/data/a.txt"],
    }
    task.update(task_env={"A": "b"}, init_image="/cvmfs/init.sif", init_args="--go", init_env={}, n_workers=None)
    request["tasks"].append({**copy.deepcopy(task), "input_queue_aliases": [], "output_queue_aliases": []})
    request["public_queue_aliases"] = []
    schema_validator(registry, "WorkflowRequest").validate(request)


def _mutated(change: str) -> dict[str, Any]:
    request = copy.deepcopy(SEED_REQUEST)
    task = request["tasks"][0]
    if change == "missing tasks":
        del request["tasks"]
    elif change == "missing public_queue_aliases":
        del request["public_queue_aliases"]
    elif change == "unknown top-level field":
        request["colour"] = "red"
    elif change == "unknown task field":
        task["n_wrokers"] = 3
    elif change == "unknown worker_config field":
        task["worker_config"]["gpus"] = 1
    elif change == "empty tasks":
        request["tasks"] = []
    elif change == "duplicate public aliases":
        request["public_queue_aliases"] = ["input-queue", "input-queue"]
    elif change == "duplicate input aliases":
        task["input_queue_aliases"] = ["input-queue", "input-queue"]
    elif change == "bad alias":
        task["output_queue_aliases"] = ["no spaces"]
    elif change == "no cluster locations":
        task["cluster_locations"] = []
    elif change == "missing worker_config":
        del task["worker_config"]
    elif change == "missing n_cores":
        del task["worker_config"]["n_cores"]
    elif change == "zero workers":
        task["n_workers"] = 0
    elif change == "negative priority":
        request["priority"] = -1
    elif change == "bad pilot tag":
        task["pilot_config"] = {"tag": "Not A Tag!"}
    elif change == "bad image source":
        task["pilot_config"] = {"image_source": "docker"}
    else:
        raise AssertionError(change)
    return request


@pytest.mark.parametrize(
    "change",
    [
        "missing tasks",
        "missing public_queue_aliases",
        "unknown top-level field",
        "unknown task field",
        "unknown worker_config field",
        "empty tasks",
        "duplicate public aliases",
        "duplicate input aliases",
        "bad alias",
        "no cluster locations",
        "missing worker_config",
        "missing n_cores",
        "zero workers",
        "negative priority",
        "bad pilot tag",
        "bad image source",
    ],
)
def test_invalid_requests_fail(registry: Registry, change: str) -> None:
    assert not schema_validator(registry, "WorkflowRequest").is_valid(_mutated(change))


def test_stored_objects(registry: Registry) -> None:
    schema_validator(registry, "TaskforceObject").validate(TASKFORCE)
    broken = {**TASKFORCE, "phase": "running"}
    assert not schema_validator(registry, "TaskforceObject").is_valid(broken)
    schema_validator(registry, "TaskforceObjectPartial").validate({"taskforce_uuid": TASKFORCE["taskforce_uuid"]})
    assert not schema_validator(registry, "TaskforceObjectPartial").is_valid({"nope": 1})
    schema_validator(registry, "WorkflowObject").validate(
        {
            "workflow_id": "WF-1-0123abcd",
            "timestamp": 1.0,
            "priority": 50,
            "deactivated": None,
            "deactivated_ts": None,
            "owner": "alice",
            "name": None,
            "labels": {"experiment": "e1"},
        }
    )
    assert not schema_validator(registry, "WorkflowObject").is_valid(
        {
            "workflow_id": "WF-1-0123abcd",
            "timestamp": 1.0,
            "priority": 50,
            "deactivated": "PAUSED",
            "deactivated_ts": None,
            "owner": "alice",
        }
    )


def test_either_or_responses(registry: Registry) -> None:
    stopper = schema_validator(registry, "PendingStopperResponse")
    stopper.validate({})
    stopper.validate(TASKFORCE)
    assert not stopper.is_valid({"taskforce": TASKFORCE})
    starter = schema_validator(registry, "PendingStarterResponse")
    starter.validate({})
    assert not starter.is_valid({"taskforce": TASKFORCE})
    statuses = schema_validator(registry, "TaskforceStatusesResponse")
    statuses.validate(
        {
            "results": [
                {"uuid": "a", "status": "updated"},
                {"uuid": "b", "status": "failed", "error": "no taskforce found"},
            ]
        }
    )
    assert not statuses.is_valid({"results": [{"uuid": "b", "status": "failed"}]})


def test_id_patterns(doc: dict[str, Any]) -> None:
    params = doc["components"]["parameters"]
    samples = {
        "WorkflowIdParam": ("WF-6741a2b3-0123abcd", "WF-6741a2b3-0123abc"),
        "TaskIdParam": ("TK-6741a2b3-0123abcd-4567ef01", "TK-6741a2b3-0123abcd"),
        "TaskforceUUIDParam": ("TF-6741a2b3-0123abcd-4567ef01-89abcdef", "TF-6741A2B3-0123abcd-4567ef01-89abcdef"),
    }
    for name, (good, bad) in samples.items():
        pattern = re.compile(params[name]["schema"]["pattern"])
        assert pattern.search(good) and not pattern.search(bad), name


# ---------------------------------------------------------------------------------------------- openapi-core


@pytest.fixture(scope="module")
def api(doc: dict[str, Any]) -> OpenAPI:
    # openapi-core only parses application/json by itself; problem+json needs telling
    return OpenAPI.from_dict(doc, config=Config(extra_media_type_deserializers={PROBLEM: json_loads}))


def _request(method: str, path: str, body: Any = None, args: dict[str, str] | None = None) -> MockRequest:
    data = None if body is None else json.dumps(body).encode()
    return MockRequest(
        "http://localhost",
        method,
        path,
        data=data,
        args=args or {},
        headers={"Authorization": "Bearer t"},
        content_type="application/json" if data else None,
    )


def test_openapi_core_fills_request_defaults(api: OpenAPI) -> None:
    result = api.unmarshal_request(_request("POST", "/v0/workflows", SEED_REQUEST))
    assert not result.errors
    task = result.body["tasks"][0]
    assert result.body["priority"] == 50
    assert task["worker_config"]["condor_requirements"] == ""
    assert (task["task_env"], task["init_image"], task["init_args"], task["init_env"]) == ({}, "", "", {})
    with_pilot = copy.deepcopy(SEED_REQUEST)
    with_pilot["tasks"][0]["pilot_config"] = {}
    result = api.unmarshal_request(_request("POST", "/v0/workflows", with_pilot))
    assert result.body["tasks"][0]["pilot_config"] == {
        "tag": "latest",
        "image_source": "cvmfs",
        "environment": {},
        "input_files": [],
    }


@pytest.mark.parametrize("body", [None, {}])
def test_openapi_core_optional_empty_bodies(api: OpenAPI, body: Any) -> None:
    for path in (
        "/v0/workflows/WF-1a-0123abcd/actions/abort",
        "/v0/tms/condor-rm/taskforces/" + TASKFORCE["taskforce_uuid"],
    ):
        assert not api.unmarshal_request(_request("POST", path, body)).errors


def test_openapi_core_rejects_bad_ids_and_missing_schedd(api: OpenAPI) -> None:
    assert api.unmarshal_request(_request("GET", "/v0/workflows/WF-nothex-0123abcd")).errors
    assert api.unmarshal_request(_request("GET", "/v0/tms/pending-stopper/taskforces")).errors
    for prefix in ("/v0", "/v1"):  # both servers of the document
        stopper = _request("GET", f"{prefix}/tms/pending-stopper/taskforces", args={"schedd": "s"})
        assert not api.unmarshal_request(stopper).errors
        assert api.unmarshal_request(_request("GET", f"{prefix}/workflows/WF-nothex-0123abcd")).errors
    assert api.unmarshal_request(_request("GET", "/v2/tms/pending-stopper/taskforces", args={"schedd": "s"})).errors


def test_openapi_core_validates_responses(api: OpenAPI) -> None:
    def check(request: MockRequest, status: int, body: Any, content_type: str = "application/json") -> list[Any]:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        response = MockResponse(data, status_code=status, content_type=content_type)
        return list(api.unmarshal_response(request, response).errors)

    problem = {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no", "code": 404, "error": "no"}
    assert not check(_request("GET", "/v0/workflows/WF-1a-0123abcd"), 404, problem, PROBLEM)
    health = {"status": "ok", "instance_id": "9f3a", "daemon_lease_holder": None}
    assert not check(_request("GET", "/v0/"), 200, health)
    assert not check(_request("GET", "/metrics"), 200, "# HELP up 1\n", "text/plain; version=0.0.4; charset=utf-8")
    stopper = _request("GET", "/v0/tms/pending-stopper/taskforces", args={"schedd": "s"})
    assert not check(stopper, 200, TASKFORCE)
    assert not check(stopper, 200, {})
    query = _request("POST", "/v0/query/taskforces", {"query": {}})
    assert not check(query, 200, {"taskforces": [{"phase": "pre-launch"}], "next_after": None})
    assert check(query, 200, {"taskforces": [{"phase": "running"}], "next_after": None})
