"""REST-only replicas beside one instance with the daemons, and the MQ activator's recovery of its own crashes."""

from __future__ import annotations

import asyncio

import pytest
from apiclient import Api
from factories import workflow_request
from test_workflow_lifecycle import wait_for_phase

from wms.config import ConfigError, WMSConfig
from wms.daemons.mq_activator import MQActivator
from wms.database.store import MQ_ACTIVATED_TS, MQ_RETIRED
from wms.lifecycle import Phase


async def test_a_rest_only_wms_leaves_activation_to_the_instance_with_the_daemons(start_wms, make_token) -> None:  # type: ignore[no-untyped-def]
    rest_only = await start_wms(WMS_RUN_DAEMONS="false")
    api = Api(rest_only.url, make_token("user", "frank"))
    created = await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha", "test-beta")))
    uuids = [tf["taskforce_uuid"] for tf in created["taskforces"]]
    await asyncio.sleep(1.0)  # five poll intervals of a daemon, had one run here
    assert {(await api.ok("GET", f"/v0/taskforces/{u}"))["phase"] for u in uuids} == {"pre-mq-activation"}

    await start_wms(WMS_DB_NAME=rest_only.config.db_name)  # the daemons' instance, on the same database
    await wait_for_phase(api, uuids, "pending-starter")
    profiles = await api.ok("GET", f"/v0/mqs/workflows/{created['workflow']['workflow_id']}/mq-profiles/public")
    assert all(p["is_activated"] and p["auth_token"] for p in profiles["mqprofiles"])


def test_run_daemons_setting_is_checked() -> None:
    env = {"AUTH_SIGNING_KEY": "k" * 32}
    assert WMSConfig.from_env(env).run_daemons
    assert not WMSConfig.from_env({**env, "WMS_RUN_DAEMONS": "false"}).run_daemons
    with pytest.raises(ConfigError, match="WMS_RUN_DAEMONS"):
        WMSConfig.from_env({**env, "WMS_RUN_DAEMONS": "sometimes"})


async def test_a_crash_between_advancing_taskforces_and_flagging_the_workflow_is_completed(
    start_wms, make_token
) -> None:  # type: ignore[no-untyped-def]
    server = await start_wms(WMS_RUN_DAEMONS="false")
    api = Api(server.url, make_token("user", "grace"))
    created = await api.ok("POST", "/v0/workflows", workflow_request())
    wid = created["workflow"]["workflow_id"]
    wms = server.wms
    # what an activator that crashed after advancing the taskforces (and before setting the flag) leaves behind
    await wms.mqs.activate(wid, 50)
    await wms.lifecycle.move_many({"workflow_id": wid}, Phase.PRE_LAUNCH, source_entity="test", context="crash")
    activator = MQActivator(wms.store, wms.lifecycle, wms.mqs, wms.config, wms.wakeups.launch)
    await activator.one_pass()
    workflow = await wms.store.workflows.find_one({"workflow_id": wid})
    assert workflow is not None and workflow[MQ_ACTIVATED_TS]
    assert (await api.ok("GET", f"/v0/taskforces/{created['taskforces'][0]['taskforce_uuid']}"))["phase"] == (
        "pre-launch"
    )


async def test_each_pass_retires_the_queues_of_workflows_deactivated_either_way(start_wms, make_token) -> None:  # type: ignore[no-untyped-def]
    server = await start_wms(WMS_RUN_DAEMONS="false")
    api = Api(server.url, make_token("user", "heidi"))
    ids = [(await api.ok("POST", "/v0/workflows", workflow_request()))["workflow"]["workflow_id"] for _ in range(3)]
    await api.ok("POST", f"/v0/workflows/{ids[0]}/actions/abort")
    await api.ok("POST", f"/v0/workflows/{ids[1]}/actions/finished")
    wms = server.wms
    await MQActivator(wms.store, wms.lifecycle, wms.mqs, wms.config, wms.wakeups.launch).one_pass()
    retired = {wf["workflow_id"]: bool(wf[MQ_RETIRED]) async for wf in wms.store.workflows.find({})}
    assert retired == {ids[0]: True, ids[1]: True, ids[2]: False}
    groups = {g["workflow_id"]: g["deactivated_ts"] async for g in wms.store.db["mq_groups"].find({})}
    assert groups[ids[0]] and groups[ids[1]] and groups[ids[2]] is None  # the MQS deletes those after the grace
