"""Submit descriptions as real htcondor2.Submit objects, the pilot environment and its env file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import htcondor2
import pytest
from tms_fakes import make_pending, make_taskforce

from tms.config import CONTAINER_REQUIREMENTS
from tms.submit_description import (
    ENV_FILE_NAME,
    TaskforceSpecError,
    build_job_spec,
    parse_size,
    priority_expression,
)


def test_container_description(make_config, tmp_path: Path) -> None:
    config = make_config(pilot_image_base="/cvmfs/pilots/ewms-pilot", input_file_prefixes=("/data/shared",))
    taskforce = make_taskforce("TF-1", n_workers=4)
    taskforce["worker_config"]["condor_requirements"] = "OpSysMajorVer == 9"
    taskforce["pilot_config"]["input_files"] = ["/data/shared/lut.dat"]
    log = config.job_event_log_dir / "2026-03-02.tms.jel"
    spec, n_workers = build_job_spec(config, make_pending(taskforce), log)
    tf_dir = config.job_event_log_dir / "ewms-taskforce-TF-1"
    assert n_workers == 4 and spec.taskforce_dir == tf_dir and spec.job_event_log == log
    assert spec.submit_dict == {
        "universe": "container",
        "+should_transfer_container": "no",
        "container_image": "/cvmfs/pilots/ewms-pilot:1.2.3",
        "requirements": f"({CONTAINER_REQUIREMENTS}) && (OpSysMajorVer == 9)",
        "+FileSystemDomain": '"blah"',
        "log": str(log),
        "transfer_input_files": f"/data/shared/lut.dat,{tf_dir / ENV_FILE_NAME}",
        "transfer_output_files": '""',
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT_OR_EVICT",
        "transfer_executable": "false",
        "request_cpus": "1",
        "request_memory": "512",
        "request_disk": "1048576",
        "priority": "10 - (($(ProcId) * 5) / 3)",
        "+WantIOProxy": "true",
        "+OriginalTime": "3600",
        "allowed_execute_duration": "3600",
        "+EWMSTaskforceUUID": '"TF-1"',
        "job_ad_information_attrs": "EWMSTaskforceUUID",
        "output": f"{tf_dir}/cluster-$(ClusterId)/$(ProcId).out",
        "error": f"{tf_dir}/cluster-$(ClusterId)/$(ProcId).err",
    }
    submit = htcondor2.Submit(spec.submit_dict)
    assert submit["MY.EWMSTaskforceUUID"] == '"TF-1"'
    assert submit["container_image"] == "/cvmfs/pilots/ewms-pilot:1.2.3"
    assert submit.expand("request_memory") == "512"
    rendered = str(submit)
    assert "universe = container" in rendered and "MY.WantIOProxy = true" in rendered


def test_executable_wrapper_description(make_config) -> None:
    config = make_config(pilot_launch="executable", pilot_command="ewms-pilot --verbose", condor_requirements="")
    taskforce = make_taskforce("TF-2", n_workers=1)
    taskforce["worker_config"]["do_transfer_worker_stdouterr"] = False
    spec, _ = build_job_spec(config, make_pending(taskforce), config.job_event_log_dir / "x.tms.jel")
    d = spec.submit_dict
    assert (d["universe"], d["executable"], d["transfer_executable"]) == ("vanilla", "/bin/sh", "false")
    assert d["arguments"] == f"\"-c '. ./{ENV_FILE_NAME} && exec ewms-pilot --verbose'\""
    assert "requirements" not in d and "container_image" not in d and "output" not in d
    assert d["priority"] == "10"
    submit = htcondor2.Submit(d)
    assert submit["arguments"] == d["arguments"]


def test_pilot_environment_and_env_file(make_config) -> None:
    config = make_config(extra_pilot_env={"EWMS_PILOT_TIMEOUT_QUEUE_INCOMING": "30", "EWMS_PILOT_HTCHIRP": "no"})
    taskforce = make_taskforce("TF-3")
    taskforce["pilot_config"]["environment"]["EWMS_PILOT_OKAY_ERRORS"] = ["TimeoutError", "ValueError"]
    pending = make_pending(taskforce)
    pending["task_directive"]["task_env"] = {"A": "it's $HOME"}
    second = dict(pending["mqprofiles"][1], mqid="out2-TF-3", auth_token="tok-out2", broker_address="u@other:5672")
    pending["mqprofiles"].append(second)
    pending["task_directive"]["output_queues"].append("out2-TF-3")
    spec, _ = build_job_spec(config, pending, config.job_event_log_dir / "x.tms.jel")
    env = spec.pilot_env
    assert env["EWMS_PILOT_QUEUE_INCOMING"] == "in-TF-3"
    assert env["EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN"] == "tok-in-TF-3"
    assert env["EWMS_PILOT_QUEUE_OUTGOING"] == "out-TF-3;out2-TF-3"
    assert env["EWMS_PILOT_QUEUE_OUTGOING_AUTH_TOKEN"] == "tok-out-TF-3;tok-out2"
    assert env["EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS"] == "user@localhost:5672;u@other:5672"
    assert env["EWMS_PILOT_QUEUE_OUTGOING_BROKER_TYPE"] == "rabbitmq;rabbitmq"
    assert env["EWMS_PILOT_HTCHIRP"] == "True"  # the TMS's own default wins over an operator extra
    assert env["EWMS_PILOT_HTCHIRP_DEST"] == "JOB_EVENT_LOG"
    assert env["EWMS_PILOT_TIMEOUT_QUEUE_INCOMING"] == "30"
    assert env["EWMS_PILOT_OKAY_ERRORS"] == "TimeoutError ValueError"
    assert json.loads(env["EWMS_PILOT_TASK_ENV_JSON"]) == {"A": "it's $HOME"}
    env_file = spec.taskforce_dir / ENV_FILE_NAME
    assert env_file.stat().st_mode & 0o777 == 0o600
    # the env file is real shell: sourcing it gives back every value, quotes and all
    shown = subprocess.run(
        ["bash", "-c", f". {env_file} && env"], capture_output=True, text=True, check=True, env={}
    ).stdout.splitlines()
    sourced = dict(line.split("=", 1) for line in shown if line.startswith("EWMS_PILOT_"))
    assert sourced == env


def test_the_task_comes_from_the_task_directive(make_config) -> None:
    """As upstream's TMS: the stored pilot environment is what the user sent; the task and init task variables are
    built from the task directive at submit (and win over a stored value of the same name)."""
    config = make_config(extra_pilot_env={"EWMS_PILOT_TASK_ARGS": "operator"})
    taskforce = make_taskforce("TF-8")
    taskforce["pilot_config"]["environment"] = {"EWMS_PILOT_TASK_TIMEOUT": 30, "EWMS_PILOT_TASK_IMAGE": "stale"}
    pending = make_pending(taskforce)
    pending["task_directive"].update(
        task_image="", task_args="cp {{INFILE}} {{OUTFILE}}", init_args="prepare", init_env={"B": "2"}
    )
    env = build_job_spec(config, pending, config.job_event_log_dir / "x.tms.jel")[0].pilot_env
    assert env["EWMS_PILOT_TASK_TIMEOUT"] == "30"
    assert (env["EWMS_PILOT_TASK_IMAGE"], env["EWMS_PILOT_TASK_ARGS"]) == ("", "cp {{INFILE}} {{OUTFILE}}")
    assert (env["EWMS_PILOT_INIT_IMAGE"], env["EWMS_PILOT_INIT_ARGS"]) == ("", "prepare")
    assert json.loads(env["EWMS_PILOT_INIT_ENV_JSON"]) == {"B": "2"} and "EWMS_PILOT_TASK_ENV_JSON" not in env
    assert taskforce["pilot_config"]["environment"]["EWMS_PILOT_TASK_IMAGE"] == "stale"  # the taskforce is untouched
    pending["task_directive"]["task_args"] = "run\x00hidden"
    with pytest.raises(TaskforceSpecError, match="pilot environment"):
        build_job_spec(config, pending, config.job_event_log_dir / "x.tms.jel")


def test_unusable_taskforces_are_refused(make_config) -> None:
    config = make_config()
    log = config.job_event_log_dir / "x.tms.jel"
    pending = make_pending(make_taskforce("TF-4"))
    pending["mqprofiles"][0]["is_activated"] = False
    with pytest.raises(TaskforceSpecError, match="not activated"):
        build_job_spec(config, pending, log)
    pending = make_pending(make_taskforce("TF-5"))
    pending["mqprofiles"].pop()
    with pytest.raises(TaskforceSpecError, match="no MQ profile"):
        build_job_spec(config, pending, log)
    with pytest.raises(TaskforceSpecError, match="n_workers"):
        build_job_spec(config, make_pending(make_taskforce("TF-6", n_workers=0)), log)
    bad = make_taskforce("TF-7")
    bad["worker_config"]["worker_memory"] = "lots"
    with pytest.raises(TaskforceSpecError, match="not a size"):
        build_job_spec(config, make_pending(bad), log)


def test_sizes_and_priority_ramp() -> None:
    assert parse_size("512M") == parse_size("512MB") == parse_size("512 MiB") == 512 * 1024**2
    assert parse_size("1.5G") == int(1.5 * 1024**3) and parse_size(4096) == 4096 and parse_size("100") == 100
    assert priority_expression(100, 11) == "100 - (($(ProcId) * 50) / 10)"
    assert priority_expression(100, 1) == "100" and priority_expression(1, 5) == "1"
    submit = htcondor2.Submit({"priority": priority_expression(100, 11)})
    assert submit.expand("priority") == "100 - ((0 * 50) / 10)"  # HTCondor expands the macro per proc
