"""The TMS's WMS client: its settings (static token or client credentials, retries), reports retried like reads,
error details, pagination. The shared transport (retries, tokens, problems) is tested in tests/client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tms_fakes import FakeWMS, make_taskforce

from ewms_client import ClientCredentials, StaticToken, WMSError
from tms.wms_client import WMSClient


async def test_settings_choose_the_token_source_and_retries(make_config) -> None:
    static = WMSClient.from_config(make_config(http_retries=5))
    oauth = WMSClient.from_config(
        make_config(ewms_token="", ewms_token_url="http://auth/token", ewms_client_id="c", ewms_client_secret="s")
    )
    assert isinstance(static.tokens, StaticToken) and static.policy.retries == 5
    assert isinstance(oauth.tokens, ClientCredentials)
    await static.close()
    await oauth.close()


async def test_retries_errors_and_pages(fake_wms: FakeWMS, make_config) -> None:
    client = WMSClient.from_config(make_config(fake_wms.url, http_retries=2))
    for n in range(5):
        fake_wms.add(make_taskforce(f"TF-{n}", job_event_log_fpath="/logs/a.tms.jel"))
    fake_wms.fail_next.extend([503, 502])  # retried, then fine
    found = await client.query_taskforces({"job_event_log_fpath": "/logs/a.tms.jel"}, ["taskforce_uuid"])
    assert [tf["taskforce_uuid"] for tf in found] == [f"TF-{n}" for n in range(5)]  # three pages of two
    assert len(fake_wms.calls_to("/query/taskforces")) == 5
    with pytest.raises(WMSError) as err:
        await client.get_taskforce("TF-nope")
    assert err.value.status == 404 and err.value.detail == "no taskforce found with uuid TF-nope"
    assert not err.value.is_unavailable
    fake_wms.fail_next.extend([503, 503, 503])
    with pytest.raises(WMSError) as away:
        await client.get_pending_starter("ap.test")
    assert away.value.status == 503 and away.value.is_unavailable
    await client.close()


async def test_reports_are_retried_like_reads(fake_wms: FakeWMS, make_config) -> None:
    client = WMSClient.from_config(make_config(fake_wms.url, http_retries=2))
    fake_wms.add(make_taskforce("TF-1"))
    fake_wms.fail_next.extend([503, 502])
    results = await client.send_statuses({"TF-1": {"IDLE": {"null": 1}}}, {})
    assert results == [{"uuid": "TF-1", "status": "updated"}]
    assert len(fake_wms.calls_to("/tms/statuses/taskforces")) == 3
    await client.close()


async def test_statuses_body_holds_only_given_parts() -> None:
    # the body shape is checked against the real WMS in test_tms_with_real_wms; here: empty parts are left out
    sent: list[dict] = []

    class Recorder(WMSClient):
        async def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
            sent.append(json.loads(json.dumps(body)))
            return {"results": []}

    client = Recorder("http://x", "t")
    await client.send_statuses({"TF-1": {"IDLE": {"null": 1}}}, {})
    await client.close()
    assert sent == [{"compound_statuses_by_taskforce": {"TF-1": {"IDLE": {"null": 1}}}}]
