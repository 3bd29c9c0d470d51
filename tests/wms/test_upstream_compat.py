"""Drop-in for upstream EWMS clients: the same objects (this project's extra fields marked as extensions in the
OpenAPI document), every route under `/v1` as under `/v0`, and error text in the HTTP reason phrase.

The upstream field lists below are data copied from /work/shared/reference/ewms-upstream.md (section named beside
each); the replay follows that reference's route table (A.2) and lifecycle appendix against `/v1`.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from apiclient import Api
from factories import workflow_request

from ewms_dev import processes
from wms.auth import Role
from wms.handlers.reason_phrase import MAX_LENGTH, reason_phrase

DOC = json.loads((Path(__file__).resolve().parents[2] / "Docs" / "openapi.json").read_text())
SCHEMAS: dict[str, Any] = DOC["components"]["schemas"]
EXTENSION = "x-ewms-extension"

# ---- upstream objects (reference A.3, "Objects", from upstream's components.schemas) ---------------------------
WORKFLOW = ["workflow_id", "timestamp", "priority", "deactivated", "deactivated_ts"]
TASK_DIRECTIVE = [
    "task_id", "workflow_id", "timestamp", "cluster_locations", "task_image", "task_args", "task_env",
    "init_image", "init_args", "init_env", "input_queues", "output_queues",
]  # fmt: skip
TASKFORCE = [
    "taskforce_uuid", "task_id", "workflow_id", "timestamp", "priority", "collector", "schedd", "n_workers",
    "pilot_config", "worker_config", "cluster_id", "submit_dict", "job_event_log_fpath", "phase", "phase_change_log",
    "compound_statuses", "top_task_errors",
]  # fmt: skip
PILOT_CONFIG = ["tag", "image_source", "environment", "input_files"]
WORKER_CONFIG = [
    "do_transfer_worker_stdouterr", "max_worker_runtime", "n_cores", "priority", "worker_disk", "worker_memory",
    "condor_requirements",
]  # fmt: skip
PHASE_CHANGE = ["target_phase", "timestamp", "was_successful", "source_event_time", "source_entity", "context"]
# reference C.2 (the MQS's MQProfileObject)
MQ_PROFILE = [
    "mqid", "workflow_id", "timestamp", "alias", "is_public", "is_activated", "auth_token", "broker_type",
    "broker_address",
]  # fmt: skip

# objects and responses -> upstream's field list (section of the reference)
UPSTREAM_OBJECT_FIELDS: dict[str, list[str]] = {
    "WorkflowObject": WORKFLOW,  # A.3
    "WorkflowObjectPartial": WORKFLOW,  # A.3 (a query projection's subset)
    "TaskDirectiveObject": TASK_DIRECTIVE,  # A.3
    "TaskDirectiveObjectPartial": TASK_DIRECTIVE,  # A.3
    "TaskforceObject": TASKFORCE,  # A.3
    "TaskforceObjectPartial": TASKFORCE,  # A.3
    "PilotConfig": PILOT_CONFIG,  # A.3 pilot_config
    "WorkerConfig": WORKER_CONFIG,  # A.3 worker_config
    "PhaseChangeLogEntry": PHASE_CHANGE,  # A.3 phase_change_log
    "MQProfileObject": MQ_PROFILE,  # C.2
    "FindObject": ["query", "projection", "after"],  # A.3 "Other schemas"
    "DeactivatedWorkflowResponseObject": ["workflow_id", "n_taskforces"],  # A.3 "Other schemas"
    "ProblemDetails": ["code", "error"],  # A.3 ErrorResponse, A.10
    "HealthResponse": [],  # A.2 #1: GET /v1/ answers {}
    "WorkflowPostResponse": ["workflow", "task_directives", "taskforces"],  # A.2 #3
    "WorkflowsQueryResponse": ["workflows", "next_after"],  # A.2 #4
    "TaskDirectivesQueryResponse": ["task_directives", "next_after"],  # A.2 #8
    "TaskforcesQueryResponse": ["taskforces", "next_after"],  # A.2 #12
    "TaskforceStatusesResponse": ["results"],  # A.2 #11
    "PendingStarterTaskforce": ["taskforce", "task_directive", "mqprofiles"],  # A.2 #14
    "TaskforceUUIDResponse": ["taskforce_uuid"],  # A.2 #15-#20
    "PublicMQProfilesResponse": ["mqprofiles"],  # C.1 PublicMQProfilesResponse
}
# A.2 #11: each result is {uuid, status: "updated"} or {uuid, status: "failed", error}
STATUS_RESULTS = [["uuid", "status"], ["uuid", "status", "error"]]
# request bodies -> upstream's fields (A.4: POST /v1/workflows; A.2: the other routes)
TASK_REQUEST = [
    "cluster_locations", "task_image", "task_args", "task_env", "init_image", "init_args", "init_env",
    "input_queue_aliases", "output_queue_aliases", "worker_config", "pilot_config", "n_workers",
]  # fmt: skip
UPSTREAM_REQUEST_FIELDS: dict[str, list[str]] = {
    "WorkflowRequest": ["public_queue_aliases", "priority", "tasks"],  # A.4
    "TaskRequest": TASK_REQUEST,  # A.4
    "PilotConfigRequest": PILOT_CONFIG,  # A.4 pilot_config
    "WorkerConfigRequest": WORKER_CONFIG,  # A.4 worker_config
    "AddWorkersRequest": ["cluster_location", "n_workers"],  # A.2 #10
    "CondorSubmitRequest": ["cluster_id", "n_workers", "submit_dict", "job_event_log_fpath"],  # A.2 #15
    "TMSFailureRequest": ["error"],  # A.2 #16, #19
    "CondorCompleteRequest": ["condor_complete_ts"],  # A.2 #20
    "TaskforceStatusesReport": ["top_task_errors_by_taskforce", "compound_statuses_by_taskforce"],  # A.2 #11
}
# objects and request bodies upstream has no counterpart of (the routes that use them are this project's)
OUR_OWN_OBJECTS = {
    "Labels", "JobLog", "TaskforceLogsResponse", "ArchivedWorkflowSummary", "ArchivedWorkflow", "ArchiveListResponse",
    "ArchivePurgeResponse", "LabelsUpdateRequest", "JobLogsReport", "ArchivePurgeRequest",
    "Health", "QueueDepth", "TaskforceProgress", "TaskProgress", "WorkflowProgress",
    "QueueTokenResponse", "RequeueFailedEventsResponse",  # the events and token-renewal routes
}  # fmt: skip
# every object schema of this project's document is one of upstream's or one of OUR_OWN_OBJECTS
UPSTREAM_FIELDS = UPSTREAM_OBJECT_FIELDS | UPSTREAM_REQUEST_FIELDS


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = DOC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _is_extension(prop: dict[str, Any]) -> bool:
    """Marked on the property, or (a property that is only a ``$ref``) on what it refers to."""
    return bool(prop.get(EXTENSION) or _resolve(prop).get(EXTENSION))


def _split(schema: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(upstream-shaped fields, extension fields) of an object schema."""
    props = schema.get("properties", {})
    extensions = {name for name, prop in props.items() if _is_extension(prop)}
    return set(props) - extensions, extensions


# ---------------------------------------------------------------------------------------------- object shapes


@pytest.mark.parametrize("name", sorted(UPSTREAM_FIELDS))
def test_object_schema_has_upstreams_fields_and_marked_extensions(name: str) -> None:
    schema = SCHEMAS[name]
    ours, extensions = _split(schema)
    assert ours == set(UPSTREAM_FIELDS[name]), name
    assert not schema.get(EXTENSION)
    for field in extensions:
        prop = schema["properties"][field]
        if "$ref" not in prop:
            assert "Extension of this project" in prop["description"], (name, field)


def test_status_results_have_upstreams_fields() -> None:
    variants = [set(v["properties"]) for v in SCHEMAS["TaskforceStatusResult"]["oneOf"]]
    assert variants == [set(v) for v in STATUS_RESULTS]


def test_every_object_schema_is_compared_or_ours() -> None:
    objects = {n for n, s in SCHEMAS.items() if s.get("properties") or s.get(EXTENSION)}
    assert objects == set(UPSTREAM_FIELDS) | OUR_OWN_OBJECTS
    for name in OUR_OWN_OBJECTS:
        assert SCHEMAS[name][EXTENSION] is True and "Extension of this project" in SCHEMAS[name]["description"]


def test_extensions_are_this_projects_fields() -> None:
    # the fields the issue names: owner, labels, cluster_location (and limit, the problem-details fields)
    progress = {"health", "health_reason"}  # and progress (issue 15)
    names = {"name"}  # and the CLI issue's human names, queue aliases, retry links
    assert _split(SCHEMAS["WorkflowObject"])[1] == {"owner", "labels"} | progress | names
    assert _split(SCHEMAS["TaskDirectiveObject"])[1] == {"owner", "input_queue_aliases", "output_queue_aliases"} | names
    counters = {"event_counters", "event_rate", "retry_of", "retried_as"}  # and retry links
    assert _split(SCHEMAS["TaskforceObject"])[1] == {"cluster_location", "owner"} | counters | progress
    assert _split(SCHEMAS["WorkflowRequest"])[1] == {"labels"} | names
    assert SCHEMAS["TaskforceObject"]["properties"]["job_event_log_fpath"]["type"] == "string"


def assert_upstream_shape(name: str, obj: dict[str, Any]) -> None:
    """Field by field: ``obj`` has exactly upstream's fields plus the extensions its schema marks."""
    ours, extensions = _split(SCHEMAS[name])
    assert set(obj) - extensions == set(UPSTREAM_FIELDS[name]) == ours, (name, sorted(obj))
    for field, nested in (("pilot_config", "PilotConfig"), ("worker_config", "WorkerConfig")):
        if field in obj:
            assert_upstream_shape(nested, obj[field])
    for entry in obj.get("phase_change_log", []):
        assert_upstream_shape("PhaseChangeLogEntry", entry)


# ---------------------------------------------------------------------------------------------- /v1 replay


async def test_upstream_route_sequence_under_v1(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    """The reference's lifecycle (appendix) through upstream's route table (A.2), every call under /v1."""
    user, tms = api, api_as(Role.TMS, "tms-alpha")
    assert_upstream_shape("HealthResponse", await user.ok("GET", "/v1/"))
    assert (await user.ok("GET", "/v1/schema/openapi"))["info"]["title"] == DOC["info"]["title"]

    # A.2 #3: create; everything starts in pre-mq-activation with an empty job event log path
    created = await user.ok("POST", "/v1/workflows", workflow_request(("test-alpha",)))
    assert_upstream_shape("WorkflowPostResponse", created)
    workflow_id = created["workflow"]["workflow_id"]
    (directive,) = created["task_directives"]
    (taskforce,) = created["taskforces"]
    uuid = taskforce["taskforce_uuid"]
    assert taskforce["job_event_log_fpath"] == "" and taskforce["cluster_id"] is None
    assert taskforce["phase"] == "pre-mq-activation"

    # A.2 #5, #4, #9, #8, #13, #12: read it back, by id and by query
    assert_upstream_shape("WorkflowObject", await user.ok("GET", f"/v1/workflows/{workflow_id}"))
    found = await user.ok("POST", "/v1/query/workflows", {"query": {"workflow_id": workflow_id}})
    assert_upstream_shape("WorkflowsQueryResponse", found)
    assert_upstream_shape("WorkflowObject", found["workflows"][0])
    assert_upstream_shape("TaskDirectiveObject", await user.ok("GET", f"/v1/task-directives/{directive['task_id']}"))
    found = await user.ok("POST", "/v1/query/task-directives", {"query": {"workflow_id": workflow_id}})
    assert_upstream_shape("TaskDirectivesQueryResponse", found)
    assert_upstream_shape("TaskDirectiveObject", found["task_directives"][0])
    assert_upstream_shape("TaskforceObject", await user.ok("GET", f"/v1/taskforces/{uuid}"))
    found = await tms.ok("POST", "/v1/query/taskforces", {"query": {"workflow_id": workflow_id}})
    assert_upstream_shape("TaskforcesQueryResponse", found)
    assert_upstream_shape("TaskforceObject", found["taskforces"][0])

    # the daemons activate the queues and release the taskforce to the TMS
    await processes.wait_for_phase(lambda: asyncio.gather(user.ok("GET", f"/v1/taskforces/{uuid}")), "pending-starter")
    profiles = await user.ok("GET", f"/v1/mqs/workflows/{workflow_id}/mq-profiles/public")
    assert_upstream_shape("PublicMQProfilesResponse", profiles)
    for profile in profiles["mqprofiles"]:
        assert_upstream_shape("MQProfileObject", profile)

    # A.2 #14, #16, #15: the TMS takes it, fails once, then submits
    schedd = {"schedd": "schedd-alpha.test"}
    pending = await tms.ok("GET", "/v1/tms/pending-starter/taskforces", params=schedd)
    assert_upstream_shape("PendingStarterTaskforce", pending)
    assert_upstream_shape("TaskforceObject", pending["taskforce"])
    assert_upstream_shape("TaskDirectiveObject", pending["task_directive"])
    for profile in pending["mqprofiles"]:
        assert_upstream_shape("MQProfileObject", profile)
    # upstream's TMS builds the pilot's environment from the task directive: the stored one is what the user sent
    assert pending["taskforce"]["pilot_config"]["environment"] == {}
    answer = await tms.ok("POST", f"/v1/tms/condor-submit/taskforces/{uuid}/failed", {"error": "schedd busy"})
    assert_upstream_shape("TaskforceUUIDResponse", answer)
    submit = {"cluster_id": 77, "n_workers": 3, "submit_dict": {"universe": "container"}, "job_event_log_fpath": "/j"}
    answer = await tms.ok("POST", f"/v1/tms/condor-submit/taskforces/{uuid}", submit)
    assert answer == {"taskforce_uuid": uuid}

    # A.2 #11: statuses (one unknown uuid: 207 with a failed result)
    report = {
        "compound_statuses_by_taskforce": {uuid: {"RUNNING": {"Tasking": 3}}},
        "top_task_errors_by_taskforce": {uuid: {}},
    }
    results = await tms.ok("POST", "/v1/tms/statuses/taskforces", report)
    assert_upstream_shape("TaskforceStatusesResponse", results)
    assert results["results"] == [{"uuid": uuid, "status": "updated"}]
    report["compound_statuses_by_taskforce"]["TF-0-00000000-00000000-00000000"] = {"IDLE": {"null": 1}}
    results = await tms.ok("POST", "/v1/tms/statuses/taskforces", report, status=207)
    assert sorted(map(sorted, results["results"])) == sorted(map(sorted, STATUS_RESULTS))

    # A.2 #7: finished; #17-#20: the stopper removes the jobs, then the cluster completes
    finished = await user.ok("POST", f"/v1/workflows/{workflow_id}/actions/finished")
    assert_upstream_shape("DeactivatedWorkflowResponseObject", finished)
    assert finished == {"workflow_id": workflow_id, "n_taskforces": 1}
    stopping = await tms.ok("GET", "/v1/tms/pending-stopper/taskforces", params=schedd)
    assert_upstream_shape("TaskforceObject", stopping)
    assert stopping["taskforce_uuid"] == uuid and stopping["phase"] == "pending-stopper"
    await tms.ok("POST", f"/v1/tms/condor-rm/taskforces/{uuid}/failed", {"error": "schedd busy"})
    await tms.ok("POST", f"/v1/tms/condor-rm/taskforces/{uuid}")
    await tms.ok("POST", f"/v1/tms/condor-complete/taskforces/{uuid}", {"condor_complete_ts": time.time()})
    final = await user.ok("GET", f"/v1/taskforces/{uuid}")
    assert_upstream_shape("TaskforceObject", final)
    assert final["phase"] == "condor-complete" and final["job_event_log_fpath"] == "/j"
    assert [(e["target_phase"], e["was_successful"], e["source_entity"]) for e in final["phase_change_log"]] == [
        ("pre-mq-activation", True, "USER"),
        ("pre-launch", True, "Workflow MQ Activator"),
        ("pending-starter", True, "Taskforce Launch Control"),
        ("condor-submit", False, "TMS"),
        ("condor-submit", True, "TMS"),
        ("pending-stopper", True, "User"),
        ("condor-rm", False, "TMS"),
        ("condor-rm", True, "TMS"),
        ("condor-complete", True, "TMS"),
    ]
    # the same objects under /v0
    assert await user.ok("GET", f"/v0/taskforces/{uuid}") == final


async def test_add_workers_and_abort_under_v1(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    """A.2 #10 and #6: add-workers answers an upstream TaskforceObject (created in pre-mq-activation, priority
    raised by upstream's maximum); abort deactivates; add-workers on a deactivated workflow is 422."""
    created = await api.ok("POST", "/v1/workflows", workflow_request(("test-alpha",)))
    workflow = created["workflow"]
    task_id = created["task_directives"][0]["task_id"]
    more = {"cluster_location": "test-beta", "n_workers": 2}
    added = await api_as(Role.TMS, "tms").ok("POST", f"/v1/task-directives/{task_id}/actions/add-workers", more)
    assert_upstream_shape("TaskforceObject", added)
    assert added["phase"] == "pre-mq-activation" and added["job_event_log_fpath"] == ""
    assert added["priority"] == workflow["priority"] + 100
    assert added["phase_change_log"][0]["source_entity"] == "TMS"
    aborted = await api.ok("POST", f"/v1/workflows/{workflow['workflow_id']}/actions/abort")
    assert_upstream_shape("DeactivatedWorkflowResponseObject", aborted)
    assert aborted["n_taskforces"] == 2
    assert (await api.ok("GET", f"/v1/workflows/{workflow['workflow_id']}"))["deactivated"] == "ABORTED"
    await api.problem("POST", f"/v1/task-directives/{task_id}/actions/add-workers", more, status=422)


async def test_every_route_answers_under_both_prefixes(api: Api) -> None:
    """One route table, two prefixes: the same answer from each; other prefixes are unknown."""
    created = await api.ok("POST", "/v1/workflows", workflow_request())
    workflow_id = created["workflow"]["workflow_id"]
    for path in (f"/workflows/{workflow_id}", f"/task-directives/{created['task_directives'][0]['task_id']}"):
        assert await api.ok("GET", "/v0" + path) == await api.ok("GET", "/v1" + path)
    undocumented = Api(api.base_url, api.token, validate=False)
    await undocumented.problem("GET", f"/v2/workflows/{workflow_id}", status=404)
    await undocumented.problem("GET", "/v1/metrics", status=404)  # unversioned only
    assert (await api.call("GET", "/metrics")).status_code == 403  # served (for admins) at the root
    # request validation applies under /v1 as under /v0
    for prefix in ("/v0", "/v1"):
        problem = await api.problem("POST", f"{prefix}/workflows", {"tasks": []})
        assert "public_queue_aliases" in problem["detail"]


# ---------------------------------------------------------------------------------------------- error text


def test_reason_phrase_is_one_short_ascii_line() -> None:
    assert reason_phrase("no workflow found with id: WF-1", "Not Found") == "no workflow found with id: WF-1"
    assert reason_phrase("bad\r\nX-Injected: yes\tand\x00more", "Bad Request") == "bad X-Injected: yes and more"
    assert reason_phrase("caf\u00e9 \u2013 \x85done", "Bad Request") == "caf\\xe9 \\u2013 done"
    long = reason_phrase("x" * 1000, "Bad Request")
    assert len(long) == MAX_LENGTH and long.endswith("...")
    assert reason_phrase(" \n ", "Not Found") == "Not Found"


async def test_raise_for_status_shows_the_problem_detail(wms_server, make_token) -> None:  # type: ignore[no-untyped-def]
    """requests (as wipac-rest-tools' RestClient) shows the reason phrase: it carries the detail; the body stays
    problem details."""
    headers = {"Authorization": f"Bearer {make_token(Role.USER, 'alice')}"}

    def call(method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(method, wms_server.url + path, json=body, headers=headers, timeout=30)

    for prefix in ("/v0", "/v1"):
        missing = await asyncio.to_thread(call, "GET", f"{prefix}/workflows/WF-1-00000000")
        with pytest.raises(requests.HTTPError) as raised:
            missing.raise_for_status()
        detail = missing.json()["detail"]
        assert missing.status_code == 404 and detail in str(raised.value)
        assert missing.headers["Content-Type"].startswith("application/problem+json")
        assert str(raised.value).startswith(f"404 Client Error: {detail} for url:")

    invalid = await asyncio.to_thread(call, "POST", "/v1/workflows", {"tasks": [], "priority": "high"})
    with pytest.raises(requests.HTTPError) as raised:
        invalid.raise_for_status()
    assert invalid.status_code == 400 and "\n" not in invalid.reason
    assert invalid.reason == reason_phrase(invalid.json()["detail"], "Bad Request")
    assert invalid.reason in str(raised.value)
