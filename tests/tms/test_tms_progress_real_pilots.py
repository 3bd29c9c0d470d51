"""Progress end to end: real pilots (local backend) process N events, some poison, through a real WMS and broker;
the TMS forwards their counters and ``GET /v0/workflows/{id}/progress`` follows them.

During the run a progress read is consistent: with ``ready`` read exactly by a passive declare right after the
read, ``done + failed + in_flight + ready`` never exceeds the events sent, and falls short of it by at most the
events that started since the counters were taken plus those prefetched and not started yet. Counters lag by the
pilots' report interval (1 s here) and a watcher pass; at about 4 events per second over 2 workers that is at most
``LAG_BOUND`` events (a bound on what can move in about 2.5 s, stated generously). At the end the counters are exact:
sent = done + failed, with one result per good event and one failed event per poison one.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import pika
from factories import one_task_workflow
from test_tms_with_real_wms import running_tms, tms_config, wait_for

from ewms_dev.processes import until
from pilot.events_io import Event, encode_event
from tms.config import TMSConfig

N_EVENTS = 60
POISON_EVERY = 10  # events 0, 10, 20, ... fail: 6 of 60, too few to trip the pilots' failure-rate rule
LAG_BOUND = 12
TASK = "sh -c 'sleep 0.4; grep -q poison {{INFILE}} && exit 3; cp {{INFILE}} {{OUTFILE}}'"


def connect(profile: dict[str, Any]) -> pika.BlockingConnection:
    where, _, vhost = profile["broker_address"].partition("/")
    host, port = where.rsplit(":", 1)
    credentials = pika.PlainCredentials("", profile["auth_token"])
    params = pika.ConnectionParameters(host, int(port), virtual_host=vhost, credentials=credentials)
    return pika.BlockingConnection(params)


def send(profile: dict[str, Any], n: int) -> None:
    """Publish ``n`` events (confirmed), one in ``POISON_EVERY`` poison."""
    with connect(profile) as conn:
        channel = conn.channel()
        channel.confirm_delivery()
        for i in range(n):
            data = f"poison {i}" if i % POISON_EVERY == 0 else f"event {i}"
            channel.basic_publish("", profile["mqid"], encode_event(Event(data, {})))


def ready(profile: dict[str, Any]) -> int:
    """Events ready in the queue, exact (a passive declare)."""
    with connect(profile) as conn:
        return int(conn.channel().queue_declare(profile["mqid"], passive=True).method.message_count)


async def test_progress_is_consistent_during_the_run_and_exact_at_the_end(
    api, wms_server, make_token, make_config: Callable[..., TMSConfig]
) -> None:  # type: ignore[no-untyped-def]
    request = one_task_workflow(
        TASK, 2, task_image=sys.prefix,
        EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE=60, EWMS_PILOT_TIMEOUT_QUEUE_INCOMING=5,
    )  # fmt: skip
    created = await api.ok("POST", "/v0/workflows", request)
    wf_id, uuid = created["workflow"]["workflow_id"], created["taskforces"][0]["taskforce_uuid"]
    await wait_for(api, uuid, lambda tf: tf["phase"] == "pending-starter")
    profiles = {
        p["alias"]: p for p in (await api.ok("GET", f"/v0/mqs/workflows/{wf_id}/mq-profiles/public"))["mqprofiles"]
    }
    inbox, outbox, failed_box = profiles["in"], profiles["out"], profiles["@failed-events"]
    await asyncio.to_thread(send, inbox, N_EVENTS)
    n_poison = len(range(0, N_EVENTS, POISON_EVERY))
    # the failed-events queue and a 1 s counter interval, as the operator's pilot environment
    extra = {
        "EWMS_PILOT_QUEUE_FAILED": failed_box["mqid"],
        "EWMS_PILOT_QUEUE_FAILED_AUTH_TOKEN": failed_box["auth_token"],
        "EWMS_PILOT_QUEUE_FAILED_BROKER_TYPE": "rabbitmq",
        "EWMS_PILOT_QUEUE_FAILED_BROKER_ADDRESS": failed_box["broker_address"],
        "EWMS_PILOT_HTCHIRP_RATELIMIT_INTERVAL": "1",
    }
    config = tms_config(
        make_config, wms_server, make_token, local_pilot_command=(sys.executable, "-m", "pilot"), extra_pilot_env=extra
    )
    reads: list[tuple[dict[str, Any], int]] = []

    async def mid_run() -> bool:
        progress = (await api.ok("GET", f"/v0/workflows/{wf_id}/progress"))["tasks"][0]
        reads.append((progress, await asyncio.to_thread(ready, inbox)))
        return 0 < progress["done"] and progress["done"] + progress["failed"] < N_EVENTS - 10

    async with running_tms(config):
        await until(mid_run, within=120, what="a progress read in the middle of the run", interval=0.3)
        done = await wait_for(api, uuid, lambda tf: tf["phase"] == "condor-complete", within=180)

    for progress, exact_ready in reads:
        counted = progress["done"] + progress["failed"] + progress["in_flight"] + exact_ready
        assert N_EVENTS - LAG_BOUND <= counted <= N_EVENTS, (progress, exact_ready)
        assert progress["waiting"] is None or 0 <= progress["waiting"] <= N_EVENTS  # the broker's stale figure
    middle = reads[-1][0]
    assert middle["rate"] > 0 and (middle["eta_seconds"] is None or middle["eta_seconds"] >= 0)

    final = (await api.ok("GET", f"/v0/workflows/{wf_id}/progress"))["tasks"][0]
    assert (final["done"], final["failed"], final["in_flight"]) == (N_EVENTS - n_poison, n_poison, 0)
    assert final["done"] + final["failed"] == N_EVENTS
    assert done["event_counters"]["done"] == N_EVENTS - n_poison
    assert (await asyncio.to_thread(ready, outbox), await asyncio.to_thread(ready, failed_box)) == (
        N_EVENTS - n_poison, n_poison,
    )  # fmt: skip
    assert done["compound_statuses"] == {"COMPLETED": {"Done": 2}}  # no pilot lost to poison
    taskforce = await api.ok("GET", f"/v0/taskforces/{uuid}")
    assert taskforce["health"] == "ok"
