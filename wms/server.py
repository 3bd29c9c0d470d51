"""The route table (OpenAPI path templates -> handlers, compiled to tornado URL patterns) and the HTTP server with
its connection cap, timeouts and body limit.

One table, served under every prefix the OpenAPI document's ``servers`` names (``/v0`` and upstream's ``/v1``);
a path that declares its own ``servers`` (``/metrics``: ``/``) is served under those instead."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import tornado.httpserver
import tornado.iostream
import tornado.web

from wms.config import WMSConfig
from wms.handlers import admin, failed_events, misc, pilots, queries, task_directives, taskforces, tms, ui, workflows
from wms.handlers.base import BaseHandler, NotFoundHandler

if TYPE_CHECKING:
    from wms.service import WMS

LOGGER = logging.getLogger(__name__)
ACCESS_LOG = logging.getLogger("tornado.access")
REFUSED_LINGER_SECONDS = 1.0
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

HANDLERS: list[type[BaseHandler]] = [
    misc.HealthHandler,
    misc.MetricsHandler,
    misc.SchemaHandler,
    workflows.WorkflowsHandler,
    workflows.WorkflowIDHandler,
    workflows.WorkflowProgressHandler,
    workflows.WorkflowAbortHandler,
    workflows.WorkflowFinishedHandler,
    failed_events.RequeueFailedEventsHandler,
    queries.WorkflowsQueryHandler,
    queries.TaskDirectivesQueryHandler,
    queries.TaskforcesQueryHandler,
    task_directives.TaskDirectiveIDHandler,
    task_directives.AddWorkersHandler,
    taskforces.TaskforceUUIDHandler,
    taskforces.RetryHandler,
    taskforces.TaskforceLogsHandler,
    misc.PublicMQProfilesHandler,
    pilots.QueueTokenHandler,
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


FREQUENT = (
    taskforces.TaskforceUUIDHandler,
    tms.StatusesHandler,
    tms.PendingStarterHandler,
    tms.PendingStopperHandler,
    workflows.WorkflowIDHandler,
)


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access log line (``tornado.access``: INFO, WARNING from 400, ERROR from 500), built only when that
    level is logged."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if ACCESS_LOG.isEnabledFor(level):
        request = handler.request
        ms = 1000.0 * request.request_time()
        ACCESS_LOG.log(level, "%d %s %s (%s) %.2fms", status, request.method, request.uri, request.remote_ip, ms)


def make_app(wms: WMS) -> tornado.web.Application:
    """The tornado application serving every route of the OpenAPI document under each of its prefixes."""
    # tornado tries the rules in order: the routes called most (taskforce reads, TMS polls and reports) go first
    ordered = sorted(HANDLERS, key=lambda h: h not in FREQUENT)
    rules: list[Any] = [
        (url_pattern(prefix, h.ROUTE), h, {"wms": wms}) for h in ordered for prefix in prefixes(wms.spec.doc, h.ROUTE)
    ]
    rules += ui.ROUTES
    return tornado.web.Application(
        rules,
        default_handler_class=NotFoundHandler,
        default_handler_args={"wms": wms},
        compress_response=False,
        log_function=log_request,
    )


class CappedHTTPServer(tornado.httpserver.HTTPServer):
    """An HTTP server that answers 503 and closes a connection beyond ``MAX_CONNECTIONS`` open ones, or beyond
    ``MAX_CONNECTIONS_PER_CLIENT`` from one address, before reading anything from it."""

    def initialize(  # type: ignore[override]
        self, *args: Any, max_connections: int, max_connections_per_client: int, **kwargs: Any
    ) -> None:
        """``HTTPServer``'s arguments plus the two caps (``0`` per client: no per-client cap)."""
        super().initialize(*args, **kwargs)
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self._per_client: Counter[str] = Counter()
        self._clients: dict[tornado.iostream.IOStream, str] = {}
        self._refusing: set[asyncio.Future[None]] = set()

    def handle_stream(self, stream: tornado.iostream.IOStream, address: Any) -> None:
        """Serve the connection, or refuse it when a cap is reached."""
        client = str(address[0]) if isinstance(address, tuple) else str(address)
        per_client = self.max_connections_per_client
        if len(self._connections) >= self.max_connections or (per_client and self._per_client[client] >= per_client):
            LOGGER.info("refused a connection from %s: connection cap reached", client)
            task = asyncio.ensure_future(_refuse(stream))
            self._refusing.add(task)
            task.add_done_callback(self._refusing.discard)
            return
        self._per_client[client] += 1
        self._clients[stream] = client
        super().handle_stream(stream, address)

    def on_close(self, server_conn: object) -> None:
        """Forget a closed connection."""
        super().on_close(server_conn)
        client = self._clients.pop(getattr(server_conn, "stream", None), None)  # type: ignore[arg-type]
        if client is not None:
            self._per_client[client] -= 1
            if self._per_client[client] <= 0:
                del self._per_client[client]


async def _refuse(stream: tornado.iostream.IOStream) -> None:
    """Answer 503, then close once the client has read it: the request it may already have sent is read and
    dropped for at most ``REFUSED_LINGER_SECONDS`` (closing with it unread would reset the connection, losing the
    answer)."""
    deadline = time.monotonic() + REFUSED_LINGER_SECONDS
    try:
        await stream.write(BUSY)
        stream.socket.shutdown(socket.SHUT_WR)
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.wait_for(stream.read_bytes(65536, partial=True), left)
    except (tornado.iostream.StreamClosedError, OSError, TimeoutError):
        pass
    finally:
        stream.close()


def make_http_server(app: tornado.web.Application, config: WMSConfig) -> CappedHTTPServer:
    """The server for ``app``: bodies above ``MAX_BODY_BYTES`` are never buffered (API handlers stream and refuse
    them with 413, other handlers get tornado's 400), header, body and idle timeouts, and the connection caps."""
    return CappedHTTPServer(
        app,
        xheaders=config.trust_proxy_headers,
        max_body_size=config.max_body_bytes,
        idle_connection_timeout=config.idle_timeout_seconds,
        body_timeout=config.body_timeout_seconds,
        max_connections=config.max_connections,
        max_connections_per_client=config.max_connections_per_client,
    )
