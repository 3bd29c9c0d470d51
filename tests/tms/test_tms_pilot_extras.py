"""What the TMS adds to a pilot's environment for failed events, token renewal and waiting (``tms.pilot_extras``),
as written to the env file by ``build_job_spec``."""

from __future__ import annotations

from tms_fakes import make_pending, make_taskforce

from mqs_client import FAILED_EVENTS_ALIAS
from tms.submit_description import build_job_spec


def failed_profile(workflow_id: str, **overrides: object) -> dict[str, object]:
    return {
        "mqid": "failed-q", "workflow_id": workflow_id, "timestamp": 1.0, "alias": FAILED_EVENTS_ALIAS,
        "is_public": True, "is_activated": True, "auth_token": "tok-failed", "broker_type": "rabbitmq",
        "broker_address": "localhost:5672/ewms-wf", **overrides,
    }  # fmt: skip


def test_failed_events_queue_renewal_and_wait_defaults(make_config) -> None:
    config = make_config("http://wms.example:8080", pilot_default_first_message=300.0, pilot_default_idle=60.0)
    taskforce = make_taskforce("TF-x")
    pending = make_pending(taskforce)
    pending["mqprofiles"].append(failed_profile(taskforce["workflow_id"]))
    pending["pilot_credential"] = "pilot-cred"
    spec, _ = build_job_spec(config, pending, config.job_event_log_dir / "x.tms.jel")
    env = spec.pilot_env
    assert env["EWMS_PILOT_QUEUE_FAILED"] == "failed-q"
    assert env["EWMS_PILOT_QUEUE_FAILED_AUTH_TOKEN"] == "tok-failed"
    assert env["EWMS_PILOT_QUEUE_FAILED_BROKER_TYPE"] == "rabbitmq"
    assert env["EWMS_PILOT_QUEUE_FAILED_BROKER_ADDRESS"] == "localhost:5672/ewms-wf"
    assert env["EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL"] == (
        f"http://wms.example:8080/v0/mqs/workflows/{taskforce['workflow_id']}/queues/{{queue}}/token"
    )
    assert env["EWMS_PILOT_QUEUE_TOKEN_REFRESH_CREDENTIAL"] == "pilot-cred"
    assert env["EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE"] == "300"
    assert env["EWMS_PILOT_TIMEOUT_QUEUE_INCOMING"] == "60"
    # the failed queue is not an output: the pilot publishes to it only for failed tasks
    assert "failed-q" not in env["EWMS_PILOT_QUEUE_OUTGOING"]


def test_user_and_operator_waits_win_and_missing_parts_add_nothing(make_config) -> None:
    config = make_config(
        pilot_wms_address="https://wms.internal", extra_pilot_env={"EWMS_PILOT_TIMEOUT_QUEUE_INCOMING": "5"}
    )
    taskforce = make_taskforce("TF-y")
    taskforce["pilot_config"]["environment"]["EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE"] = 7
    pending = make_pending(taskforce)
    pending["mqprofiles"].append(failed_profile(taskforce["workflow_id"], is_activated=False, auth_token=None))
    spec, _ = build_job_spec(config, pending, config.job_event_log_dir / "x.tms.jel")
    env = spec.pilot_env
    assert env["EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE"] == "7"
    assert env["EWMS_PILOT_TIMEOUT_QUEUE_INCOMING"] == "5"
    assert not any(key.startswith(("EWMS_PILOT_QUEUE_FAILED", "EWMS_PILOT_QUEUE_TOKEN_REFRESH")) for key in env)

    pending["pilot_credential"] = "cred"
    spec, _ = build_job_spec(config, pending, config.job_event_log_dir / "x.tms.jel")
    assert spec.pilot_env["EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL"].startswith("https://wms.internal/v0/mqs/workflows/")
