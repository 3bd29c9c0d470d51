"""Stopped taskforces that never got a cluster are ended (``condor-complete``) after a grace; a late
``condor-submit`` within the grace is recorded for the stopper instead, and a later one is refused."""

from __future__ import annotations

import asyncio
from typing import Any

from apiclient import Api
from test_workflow_lifecycle import ALPHA, BETA, submit, wait_for_phase

from wms.auth import Role
from wms.daemons.stuck_taskforces import SOURCE, StuckTaskforces

GRACE = 0.5


def submit_body(cluster_id: int) -> dict[str, Any]:
    return {"cluster_id": cluster_id, "n_workers": 2, "submit_dict": {}, "job_event_log_fpath": "/late.jel"}


async def launched_then_aborted(api: Api) -> list[str]:
    """A workflow whose taskforces reached ``pending-starter`` (no cluster yet) and which was then aborted."""
    created = await submit(api)
    uuids = [tf["taskforce_uuid"] for tf in created["taskforces"]]
    await wait_for_phase(api, uuids, "pending-starter")
    await api.ok("POST", f"/v0/workflows/{created['workflow']['workflow_id']}/actions/abort")
    await wait_for_phase(api, uuids, "pending-stopper")
    return uuids


async def test_the_daemons_end_the_taskforces_of_a_workflow_stopped_before_any_submit(start_wms, make_token) -> None:  # type: ignore[no-untyped-def]
    server = await start_wms(UNSUBMITTED_STOP_GRACE_SECONDS=str(GRACE))
    api = Api(server.url, make_token(Role.USER, "ivan"))
    uuids = await launched_then_aborted(api)
    ended = await wait_for_phase(api, uuids, "condor-complete")
    for doc in ended:
        assert doc["cluster_id"] is None
        last = max(doc["phase_change_log"], key=lambda entry: entry["timestamp"])
        assert last["source_entity"] == SOURCE and last["was_successful"], last
        assert "stopped before any cluster was submitted" in last["context"]
    tms = Api(server.url, make_token(Role.TMS, "tms"))
    for schedd in (ALPHA, BETA):  # the stopper never had anything to remove
        assert await tms.ok("GET", "/v0/tms/pending-stopper/taskforces", params={"schedd": schedd}) == {}


async def test_a_late_submit_within_the_grace_is_kept_for_the_stopper_and_one_after_it_refused(
    wms_server, api, api_as
) -> None:  # type: ignore[no-untyped-def]
    tms = api_as(Role.TMS, "tms")
    created = await submit(api)
    uuids = [tf["taskforce_uuid"] for tf in created["taskforces"]]
    await wait_for_phase(api, uuids, "pending-starter")
    in_flight = await tms.ok("GET", "/v0/tms/pending-starter/taskforces", params={"schedd": ALPHA})
    late_uuid = in_flight["taskforce"]["taskforce_uuid"]  # the TMS is submitting it ...
    (other_uuid,) = set(uuids) - {late_uuid}
    await api.ok("POST", f"/v0/workflows/{created['workflow']['workflow_id']}/actions/abort")  # ... when it stops
    sweeper = StuckTaskforces(wms_server.wms.store, wms_server.wms.lifecycle, GRACE)
    await sweeper.one_pass()  # both are stuck now: the grace starts
    assert {(await api.ok("GET", f"/v0/taskforces/{u}"))["phase"] for u in uuids} == {"pending-stopper"}

    await tms.ok("POST", f"/v0/tms/condor-submit/taskforces/{late_uuid}", submit_body(301))  # late, in the grace
    await asyncio.sleep(GRACE)
    await sweeper.one_pass()
    late = await api.ok("GET", f"/v0/taskforces/{late_uuid}")
    assert (late["phase"], late["cluster_id"]) == ("pending-stopper", 301)  # kept: its jobs must be removed
    assert (await api.ok("GET", f"/v0/taskforces/{other_uuid}"))["phase"] == "condor-complete"
    offered = await tms.ok("GET", "/v0/tms/pending-stopper/taskforces", params={"schedd": ALPHA})
    assert offered["taskforce_uuid"] == late_uuid
    await tms.ok("POST", f"/v0/tms/condor-rm/taskforces/{late_uuid}")
    assert (await api.ok("GET", f"/v0/taskforces/{late_uuid}"))["phase"] == "condor-rm"
    # a submit arriving after the end is refused: the TMS then removes the cluster it submitted
    await tms.problem("POST", f"/v0/tms/condor-submit/taskforces/{other_uuid}", submit_body(302), status=409)
    assert (await api.ok("GET", f"/v0/taskforces/{other_uuid}"))["cluster_id"] is None


async def test_a_sweep_racing_late_submits_never_ends_a_taskforce_whose_submit_was_accepted(
    wms_server, api, api_as
) -> None:  # type: ignore[no-untyped-def]
    tms = api_as(Role.TMS, "tms")
    uuids = [u for _ in range(3) for u in await launched_then_aborted(api)]
    sweeper = StuckTaskforces(wms_server.wms.store, wms_server.wms.lifecycle, 0.0)  # due at once
    _, *answers = await asyncio.gather(
        sweeper.one_pass(),
        *(tms.call("POST", f"/v0/tms/condor-submit/taskforces/{u}", submit_body(400 + i)) for i, u in enumerate(uuids)),
    )
    for i, (uuid, answer) in enumerate(zip(uuids, answers, strict=True)):
        doc = await api.ok("GET", f"/v0/taskforces/{uuid}")
        if answer.status_code == 200:  # the submit won: recorded for the stopper, never ended
            assert (doc["phase"], doc["cluster_id"]) == ("pending-stopper", 400 + i), doc
        else:  # the sweep won: ended without a cluster, the submit refused
            assert answer.status_code == 409, answer.text
            assert (doc["phase"], doc["cluster_id"]) == ("condor-complete", None), doc
    await sweeper.one_pass()  # nothing left to end: the others have clusters
    for uuid in uuids:
        doc = await api.ok("GET", f"/v0/taskforces/{uuid}")
        assert doc["phase"] == "condor-complete" if doc["cluster_id"] is None else doc["phase"] == "pending-stopper"
