"""The route pilots call: a fresh broker token for one queue of their workflow (``..._TOKEN_REFRESH_URL``)."""

from __future__ import annotations

from wms import pilot_credentials
from wms.auth import AuthError, Caller, Role
from wms.handlers.base import BaseHandler, Problem

PILOTS = frozenset({Role.PILOT})


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
        profile = await self.wms.operations.tms.queue_token(workflow_id, queue)
        self.send({"mqid": profile.mqid, "auth_token": profile.auth_token})
