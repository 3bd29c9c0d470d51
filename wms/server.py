"""The route table: OpenAPI path templates -> handlers, compiled to tornado URL patterns.

One table, served under every prefix the OpenAPI document's ``servers`` names (``/v0`` and upstream's ``/v1``);
a path that declares its own ``servers`` (``/metrics``: ``/``) is served under those instead."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import tornado.web

from wms.handlers import admin, misc, queries, task_directives, taskforces, tms, ui, workflows
from wms.handlers.base import BaseHandler, NotFoundHandler

if TYPE_CHECKING:
    from wms.service import WMS

HANDLERS: list[type[BaseHandler]] = [
    misc.HealthHandler,
    misc.MetricsHandler,
    misc.SchemaHandler,
    workflows.WorkflowsHandler,
    workflows.WorkflowIDHandler,
    workflows.WorkflowAbortHandler,
    workflows.WorkflowFinishedHandler,
    queries.WorkflowsQueryHandler,
    queries.TaskDirectivesQueryHandler,
    queries.TaskforcesQueryHandler,
    task_directives.TaskDirectiveIDHandler,
    task_directives.AddWorkersHandler,
    taskforces.TaskforceUUIDHandler,
    taskforces.RetryHandler,
    taskforces.TaskforceLogsHandler,
    misc.PublicMQProfilesHandler,
    tms.PendingStarterHandler,
    tms.CondorSubmitHandler,
    tms.CondorSubmitFailedHandler,
    tms.PendingStopperHandler,
    tms.CondorRmHandler,
    tms.CondorRmFailedHandler,
    tms.CondorCompleteHandler,
    tms.StatusesHandler,
    tms.TaskforceLogsReportHandler,
    admin.ArchiveListHandler,
    admin.ArchivedWorkflowHandler,
    admin.ArchivePurgeHandler,
]


def url_pattern(prefix: str, template: str) -> str:
    """``/v1`` + ``/workflows/{workflow_id}`` -> ``/v1/workflows/(?P<workflow_id>[^/]+)$``."""
    return re.escape(prefix.rstrip("/")) + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"


def prefixes(doc: dict[str, Any], template: str) -> list[str]:
    """The server URLs (path prefixes) a path of the OpenAPI document is served under."""
    servers = doc["paths"][template].get("servers", doc["servers"])
    return [str(server["url"]) for server in servers]


def make_app(wms: WMS) -> tornado.web.Application:
    """The tornado application serving every route of the OpenAPI document under each of its prefixes."""
    rules: list[Any] = [
        (url_pattern(prefix, h.ROUTE), h, {"wms": wms}) for h in HANDLERS for prefix in prefixes(wms.spec.doc, h.ROUTE)
    ]
    rules += ui.ROUTES
    return tornado.web.Application(
        rules,
        default_handler_class=NotFoundHandler,
        default_handler_args={"wms": wms},
        compress_response=False,
    )
