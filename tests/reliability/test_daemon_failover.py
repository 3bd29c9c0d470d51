"""Two WMS processes with daemons on: one holds the daemon lease and runs the daemons; when it is killed (``kill -9``)
or paused past its lease, the other takes over, and a workflow submitted afterwards is still activated and launched."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from typing import Any

import httpx
from apiclient import Api
from factories import workflow_request

from ewms_dev.processes import until, wait_for_phase
from wms.auth import Role

LEASE_SECONDS = 4.0
TAKEOVER_BOUND = LEASE_SECONDS * 1.25  # the lease time plus one renewal interval (wms.daemons.lease)
LIVENESS_MARGIN = 30.0  # for a loaded 2-core machine and the broker work of an activation: not a timing claim


async def health(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        return dict((await client.get(f"{url}/v0/")).json())


async def runs_daemons(url: str, admin: str) -> bool:
    """The instance's own ``ewms_wms_daemon_lease_held`` gauge (read with the admin token ``admin``)."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{url}/metrics", headers={"Authorization": f"Bearer {admin}"})).text
    found = re.search(r"^ewms_wms_daemon_lease_held (\S+)$", text, re.MULTILINE)
    assert found, text[-2000:]
    return float(found[1]) == 1.0


async def holder_and_standby(instances: list[Any], admin: str) -> tuple[Any, Any]:
    """The instance holding the lease and the other one, once both agree on the holder."""
    states = await until(
        lambda: asyncio.gather(*(health(w.url) for w in instances)),
        lambda hs: (
            hs[0]["daemon_lease_holder"] is not None
            and all(h["daemon_lease_holder"] == hs[0]["daemon_lease_holder"] for h in hs)
        ),
        within=20,
        what="a lease holder",
    )
    first_holds = states[0]["daemon_lease_holder"] == states[0]["instance_id"]
    holder, standby = instances if first_holds else instances[::-1]
    await until(lambda: runs_daemons(holder.url, admin), within=10, what="the holder's daemons")
    assert not await runs_daemons(standby.url, admin)
    return holder, standby


async def lease_taken_by(url: str, since: float, within: float) -> float:
    """Seconds from ``since`` until the instance at ``url`` holds the lease."""
    await until(lambda: health(url), lambda h: h["daemon_lease_holder"] == h["instance_id"], within, "lease taken")
    return time.monotonic() - since


async def submit_and_wait_for_launch(api: Api, within: float) -> float:
    """Submit a workflow; the seconds until its queues are activated and its taskforces released to the TMS."""
    started = time.monotonic()
    created = await api.ok("POST", "/v0/workflows", workflow_request(("test-alpha", "test-beta")))
    uuids = [tf["taskforce_uuid"] for tf in created["taskforces"]]
    await wait_for_phase(
        lambda: asyncio.gather(*(api.ok("GET", f"/v0/taskforces/{u}") for u in uuids)), "pending-starter", within
    )
    profiles = await api.ok("GET", f"/v0/mqs/workflows/{created['workflow']['workflow_id']}/mq-profiles/public")
    assert all(p["is_activated"] and p["auth_token"] for p in profiles["mqprofiles"])
    return time.monotonic() - started


async def test_kill_9_of_the_daemon_holder_hands_the_daemons_to_the_other_instance(
    spawn_wms, make_token, figures
) -> None:  # type: ignore[no-untyped-def]
    instances = [spawn_wms(DAEMON_LEASE_SECONDS=str(LEASE_SECONDS)) for _ in range(2)]
    admin = make_token(Role.ADMIN, "operator")
    holder, standby = await holder_and_standby(instances, admin)
    api = Api(standby.url, make_token(Role.USER, "failover"))
    await submit_and_wait_for_launch(api, within=30)  # served by the standby, run by the holder's daemons

    holder.proc.send_signal(signal.SIGKILL)
    holder.proc.wait()
    killed = time.monotonic()
    bound = TAKEOVER_BOUND + LIVENESS_MARGIN
    taken_in, launched_in = await asyncio.gather(
        lease_taken_by(standby.url, killed, bound), submit_and_wait_for_launch(api, bound)
    )
    assert await runs_daemons(standby.url, admin)
    assert "daemon lease taken by" in standby.log.read_text()
    figures.update(
        faults_injected=1,
        leader_failovers=1,
        lease_seconds=LEASE_SECONDS,
        failover_s=round(taken_in, 2),
        launched_after_kill_s=round(launched_in, 2),
    )


async def test_a_paused_holder_gives_the_daemons_up_to_the_other_instance(spawn_wms, make_token, figures) -> None:  # type: ignore[no-untyped-def]
    instances = [spawn_wms(DAEMON_LEASE_SECONDS=str(LEASE_SECONDS)) for _ in range(2)]
    admin = make_token(Role.ADMIN, "operator")
    holder, standby = await holder_and_standby(instances, admin)
    os.kill(holder.proc.pid, signal.SIGSTOP)  # a frozen VM or a long pause: it cannot renew
    try:
        taken_in = await lease_taken_by(standby.url, time.monotonic(), TAKEOVER_BOUND + LIVENESS_MARGIN)
    finally:
        os.kill(holder.proc.pid, signal.SIGCONT)
    state = await health(standby.url)
    # the old holder wakes up past its lease: it stops its daemons and does not take the lease back
    await until(lambda: runs_daemons(holder.url, admin), lambda running: not running, within=20, what="daemons stopped")
    assert (await health(holder.url))["daemon_lease_holder"] == state["instance_id"]
    assert await runs_daemons(standby.url, admin)
    # the REST API of the old holder still serves; the new holder's daemons launch what it accepts
    await submit_and_wait_for_launch(Api(holder.url, make_token(Role.USER, "paused")), within=30)
    assert "stopping the daemons" in holder.log.read_text()
    figures.update(faults_injected=1, leader_failovers=1, lease_seconds=LEASE_SECONDS, failover_s=round(taken_in, 2))
