"""Unit tests: a workflow request becomes the right documents (no servers)."""

from __future__ import annotations

import json

import pytest
from factories import chained_request, workflow_request

from wms import schema
from wms.config import WMSConfig
from wms.database.store import public
from wms.translation import TranslationError, build_documents, plan_workflow

CONFIG = WMSConfig.from_env(
    {"AUTH_SIGNING_KEY": "k" * 32, "EWMS_CLUSTERS": json.dumps({"test-alpha": "sa", "test-beta": "sb"})}
)
SPEC = schema.load(CONFIG.openapi_path)


def _build(request: dict) -> tuple[dict, list[dict], list[dict]]:
    plan = plan_workflow(request, "alice", CONFIG)
    return build_documents(plan, {a: f"mq-{a}" for a in plan.queue_aliases})


def test_one_taskforce_per_task_and_location_with_persisted_attributes() -> None:
    request = workflow_request(("test-alpha", "test-beta"))
    request["tasks"][0]["init_image"] = "/img/init"
    request["tasks"][0]["init_env"] = {"A": "1"}
    request["tasks"][0]["pilot_config"] = {"environment": {"EWMS_PILOT_TASK_TIMEOUT": 30}, "tag": "1.2.3"}
    workflow, directives, taskforces = _build(request)
    assert len(directives) == 1 and len(taskforces) == 2
    directive = directives[0]
    assert directive["task_image"] == "/cvmfs/example/image:1.0"
    assert directive["input_queues"] == ["mq-in"] and directive["output_queues"] == ["mq-out"]
    assert {tf["schedd"] for tf in taskforces} == {"sa", "sb"}
    for tf in taskforces:
        # stored as the user sent it (as upstream): the TMS builds the pilot's environment from the directive
        assert tf["pilot_config"]["environment"] == {"EWMS_PILOT_TASK_TIMEOUT": 30}
        assert directive["task_env"] == {"MODE": "fast"} and directive["init_env"] == {"A": "1"}
        assert directive["init_image"] == "/img/init"
        assert tf["pilot_config"]["tag"] == "1.2.3" and tf["pilot_config"]["image_source"] == "cvmfs"
        assert tf["worker_config"]["condor_requirements"] == ""
        assert tf["n_workers"] == 3 and tf["phase"] == "pre-mq-activation"
        assert tf["task_id"] == directive["task_id"] and tf["workflow_id"] == workflow["workflow_id"]
        SPEC.validate_object("TaskforceObject", public(tf))
    SPEC.validate_object("TaskDirectiveObject", public(directive))


@pytest.mark.parametrize(("given", "expected"), [(None, 50), (7, 7), (100, 100), (5000, 100)])
def test_priority_defaults_to_50_and_is_capped_at_100(given: int | None, expected: int) -> None:
    request = workflow_request()
    if given is not None:
        request["priority"] = given
    workflow, _, taskforces = _build(request)
    assert workflow["priority"] == expected and taskforces[0]["priority"] == expected


def test_missing_n_workers_gets_the_default() -> None:
    request = workflow_request()
    del request["tasks"][0]["n_workers"]
    _, _, taskforces = _build(request)
    assert taskforces[0]["n_workers"] == CONFIG.default_n_workers


def test_chained_tasks_share_the_middle_queue() -> None:
    _, directives, _ = _build(chained_request())
    assert directives[0]["output_queues"] == directives[1]["input_queues"] == ["mq-mid"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["tasks"][0].__setitem__("cluster_locations", ["nowhere"]), "unknown cluster location"),
        (
            lambda r: r["tasks"][0].__setitem__("pilot_config", {"environment": {"EWMS_PILOT_TASK_IMAGE": "x"}}),
            "may not set EWMS_PILOT_TASK_IMAGE",
        ),
        (
            lambda r: r["tasks"][0].__setitem__("pilot_config", {"environment": {"EWMS_PILOT_QUEUE_INCOMING": "x"}}),
            "may not set EWMS_PILOT_QUEUE_INCOMING",
        ),
        (lambda r: r.__setitem__("public_queue_aliases", ["in", "ghost"]), "not used by any task"),
    ],
)
def test_requests_that_cannot_be_translated(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    request = workflow_request()
    mutate(request)
    with pytest.raises(TranslationError, match=message):
        plan_workflow(request, "alice", CONFIG)
