"""Health, metrics, the OpenAPI document, and the public MQ profiles of a workflow."""

from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST

from wms.auth import Caller, Role
from wms.handlers.admin import ADMIN
from wms.handlers.base import ANYONE, USERS, BaseHandler


class HealthHandler(BaseHandler):
    """``GET /v0/``: 200 when the database answers, with this instance's id and the daemon lease's holder."""

    ROUTE = "/"

    async def get(self) -> None:
        """Ping the database; say which instance this is and which one holds the daemon lease."""
        await self.wms.store.db.command("ping")
        holder = await self.wms.daemons.holder()
        self.send({"status": "ok", "instance_id": self.wms.instance_id, "daemon_lease_holder": holder})


class MetricsHandler(BaseHandler):
    """``GET /metrics``: Prometheus exposition, for an admin token or the bearer credential ``METRICS_TOKEN`` (what
    Prometheus' ``authorization`` scrape setting sends)."""

    ROUTE = "/metrics"
    ROLES = {"GET": ADMIN}

    def authenticate(self) -> Caller:
        """The metrics credential stands for an admin on this route only; any other token is checked as usual."""
        scheme, _, credential = self.request.headers.get("Authorization", "").partition(" ")
        configured = self.wms.config.metrics_token
        if (
            scheme.lower() == "bearer"
            and configured
            and hmac.compare_digest(credential.strip().encode(), configured.encode())
        ):
            return Caller(subject="metrics-scraper", roles=frozenset({Role.ADMIN}))
        return super().authenticate()

    async def get(self) -> None:
        """Render the metrics."""
        body = await self.wms.metrics.render(self.wms.store)
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(body)


class SchemaHandler(BaseHandler):
    """``GET /v0/schema/openapi``."""

    ROUTE = "/schema/openapi"
    ROLES = {"GET": ANYONE}

    async def get(self) -> None:
        """Return the OpenAPI document the server validates against."""
        self.send(self.wms.spec.doc)


class PublicMQProfilesHandler(BaseHandler):
    """``GET /v0/mqs/workflows/{workflow_id}/mq-profiles/public``: queue address, name and token for the owner."""

    ROUTE = "/mqs/workflows/{workflow_id}/mq-profiles/public"
    ROLES = {"GET": USERS}

    async def get(self, workflow_id: str) -> None:
        """The workflow's public queues (poll ``is_activated``)."""
        profiles = await self.wms.operations.workflows.public_profiles(workflow_id, self.require_caller())
        self.send({"mqprofiles": [p.to_dict() for p in profiles]})
