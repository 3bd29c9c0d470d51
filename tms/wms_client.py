"""The WMS REST API routes a TMS uses (``/v0``, role ``system-tms``), on the shared :class:`ewms_client.WMSClient`
(its retry policy, token source and :class:`ewms_client.WMSError`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ewms_client import ClientCredentials, RetryPolicy, StaticToken, TokenSource
from ewms_client import WMSClient as UserClient
from tms.config import TMSConfig


class WMSClient(UserClient):
    """The TMS side of the WMS API: the user routes' reads and queries, and one method per TMS route. Reports are
    idempotent (repeating one is harmless), so the policy retries them like reads."""

    @classmethod
    def from_config(cls, config: TMSConfig) -> WMSClient:
        """Client for ``EWMS_ADDRESS`` with the configured credentials and retries."""
        tokens: TokenSource = (
            StaticToken(config.ewms_token)
            if config.ewms_token
            else ClientCredentials(config.ewms_token_url, config.ewms_client_id, config.ewms_client_secret)
        )
        return cls(config.ewms_address, tokens, timeout=config.http_timeout, policy=RetryPolicy(config.http_retries))

    async def close(self) -> None:
        """Close connections."""
        await self.aclose()

    # -- starter ---------------------------------------------------------------------------------------------------

    async def get_pending_starter(self, schedd: str) -> dict[str, Any] | None:
        """Next taskforce to start, with its task directive and MQ profiles; ``None`` when there is none."""
        body = await self.request("GET", "/v0/tms/pending-starter/taskforces", params={"schedd": schedd})
        return body if body else None

    async def confirm_condor_submit(
        self, uuid: str, cluster_id: int, n_workers: int, submit_dict: Mapping[str, str], job_event_log_fpath: str
    ) -> None:
        """Record a successful submission (repeating it with the same cluster is fine; 409 -> WMSError: the taskforce
        is no longer pending-starter)."""
        body = {
            "cluster_id": cluster_id,
            "n_workers": n_workers,
            "submit_dict": dict(submit_dict),
            "job_event_log_fpath": job_event_log_fpath,
        }
        await self.request("POST", f"/v0/tms/condor-submit/taskforces/{uuid}", body, idempotent=True)

    async def fail_condor_submit(self, uuid: str, error: str) -> None:
        """Record a failed submission."""
        await self.request("POST", f"/v0/tms/condor-submit/taskforces/{uuid}/failed", {"error": error})

    # -- stopper ---------------------------------------------------------------------------------------------------

    async def get_pending_stopper(self, schedd: str) -> dict[str, Any] | None:
        """Next taskforce whose jobs must be removed; ``None`` when there is none."""
        body = await self.request("GET", "/v0/tms/pending-stopper/taskforces", params={"schedd": schedd})
        return body if body else None

    async def confirm_condor_rm(self, uuid: str) -> None:
        """Record that the taskforce's jobs were removed."""
        await self.request("POST", f"/v0/tms/condor-rm/taskforces/{uuid}", idempotent=True)

    async def fail_condor_rm(self, uuid: str, error: str) -> None:
        """Record a failed removal."""
        await self.request("POST", f"/v0/tms/condor-rm/taskforces/{uuid}/failed", {"error": error})

    # -- watcher ---------------------------------------------------------------------------------------------------

    async def confirm_condor_complete(self, uuid: str, condor_complete_ts: int) -> None:
        """Record that the taskforce's cluster has left the queue."""
        await self.request(
            "POST", f"/v0/tms/condor-complete/taskforces/{uuid}", {"condor_complete_ts": int(condor_complete_ts)},
            idempotent=True,
        )

    async def send_statuses(
        self,
        compound_statuses: Mapping[str, Mapping[str, Mapping[str, int]]],
        top_task_errors: Mapping[str, Mapping[str, int]],
        event_counters: Mapping[str, Mapping[str, int]] | None = None,
    ) -> list[dict[str, Any]]:
        """Bulk status report (with the taskforces' ``event_counters``); returns the per-taskforce results (some may
        be ``failed`` on 207)."""
        body: dict[str, Any] = {}
        if compound_statuses:
            body["compound_statuses_by_taskforce"] = compound_statuses
        if top_task_errors:
            body["top_task_errors_by_taskforce"] = top_task_errors
        if event_counters:
            body["event_counters_by_taskforce"] = event_counters
        resp = await self.request("POST", "/v0/tms/statuses/taskforces", body, idempotent=True)
        return list(resp.get("results", [])) if isinstance(resp, dict) else []

    async def send_job_logs(self, uuid: str, jobs: Sequence[Mapping[str, Any]]) -> None:
        """Store job output tails of one taskforce (1..200 ``JobLog`` records; replaced per job id)."""
        await self.request("POST", f"/v0/tms/logs/taskforces/{uuid}", {"jobs": list(jobs)}, idempotent=True)

    async def query_taskforces(self, query: Mapping[str, Any], projection: list[str]) -> list[dict[str, Any]]:
        """All taskforces matching ``query`` (every page)."""
        return [tf async for tf in self.query("taskforces", dict(query), projection)]
