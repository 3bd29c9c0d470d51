"""The route pilots call: a fresh broker token for one queue of their workflow (``..._TOKEN_REFRESH_URL``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mqs_client.interface import FAILED_EVENTS_ALIAS, MQSError, MQSNotFound
from wms import pilot_credentials
from wms.auth import AuthError, Caller, Role
from wms.handlers.base import BaseHandler, Problem

if TYPE_CHECKING:
    from wms.service import WMS

PILOTS = frozenset({Role.PILOT})


async def starter_additions(wms: WMS, taskforce: dict[str, Any]) -> dict[str, Any]:
    """What the pending-starter answer adds for the pilots: the workflow's failed-events queue profile (when the MQS
    has one) and a pilot credential (None when the WMS issues none)."""
    workflow_id = taskforce["workflow_id"]
    try:
        public = await wms.mqs.get_public_profiles(workflow_id)
    except MQSNotFound:
        public = []
    return {
        "failed_events": [p.to_dict() for p in public if p.alias == FAILED_EVENTS_ALIAS],
        "pilot_credential": pilot_credentials.issue(wms.config, workflow_id, taskforce.get("worker_config") or {}),
    }


class QueueTokenHandler(BaseHandler):
    """``POST /v0/mqs/workflows/{workflow_id}/queues/{queue}/token``: for the holder of a pilot credential."""

    ROUTE = "/mqs/workflows/{workflow_id}/queues/{queue}/token"
    ROLES = {"POST": PILOTS}
    pilot_workflow_id = ""

    def authenticate(self) -> Caller:
        """A pilot credential (``wms.pilot_credentials``), which names one workflow; any other valid token is
        authenticated as usual but never holds the pilot role here (403)."""
        authorization = self.request.headers.get("Authorization")
        try:
            pilot = pilot_credentials.verify(self.wms.config, authorization)
        except AuthError:
            caller = self.wms.auth.authenticate(authorization)
            return Caller(subject=caller.subject, roles=caller.roles - PILOTS)
        self.pilot_workflow_id = pilot.workflow_id
        return Caller(subject=f"{pilot_credentials.SUBJECT_PREFIX}{pilot.workflow_id}", roles=PILOTS)

    async def post(self, workflow_id: str, queue: str) -> None:
        """Mint a token for the queue when it belongs to the credential's workflow and that workflow is active."""
        if self.pilot_workflow_id != workflow_id:
            raise Problem(403, f"this pilot credential is for workflow {self.pilot_workflow_id}, not {workflow_id}")
        workflow = await self.wms.store.workflows.find_one({"workflow_id": workflow_id}, {"_id": False})
        if workflow is None:
            raise Problem(404, f"no workflow found with id: {workflow_id}")
        if workflow["deactivated"]:
            raise Problem(409, f"workflow {workflow_id} is {workflow['deactivated'].lower()}: no new queue tokens")
        try:
            profile = await self.wms.mqs.renew_token(workflow_id, queue)
        except MQSNotFound as exc:
            raise Problem(404, f"workflow {workflow_id} has no queue {queue}") from exc
        except MQSError as exc:
            raise Problem(409, f"queue {queue} of workflow {workflow_id}: {exc}") from exc
        self.send({"mqid": profile.mqid, "auth_token": profile.auth_token})
