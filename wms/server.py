"""The route table: OpenAPI path templates -> handlers, compiled to tornado URL patterns."""

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


def url_pattern(template: str) -> str:
    """``/v0/workflows/{workflow_id}`` -> ``/v0/workflows/(?P<workflow_id>[^/]+)$``."""
    return re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"


def make_app(wms: WMS) -> tornado.web.Application:
    """The tornado application serving every route of the OpenAPI document."""
    rules: list[Any] = [(url_pattern(h.ROUTE), h, {"wms": wms}) for h in HANDLERS] + ui.ROUTES
    return tornado.web.Application(
        rules,
        default_handler_class=NotFoundHandler,
        default_handler_args={"wms": wms},
        compress_response=False,
    )
