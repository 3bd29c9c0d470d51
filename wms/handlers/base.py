"""The handler base: authentication, role checks, body limits, validation against the OpenAPI document,
RFC 7807 problem-details errors and per-route metrics.

Request bodies are streamed (``stream_request_body``): the token, the parameters and ``Content-Length`` are checked
in ``prepare()`` before any of the body is read, the body is kept only up to ``MAX_BODY_BYTES``, and it is parsed and
validated once complete, before the route's method runs (``_after_body``).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
import tornado.web
from bson.errors import BSONError
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError
from tornado.http1connection import HTTP1Connection

from mqs_client.interface import MQSError, TryAgainLater
from wms.auth import AuthError, Caller, Role
from wms.handlers.reason_phrase import reason_phrase
from wms.operations.errors import OperationError
from wms.schema import SchemaViolation

if TYPE_CHECKING:
    from wms.service import WMS

LOGGER = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="ewms"'}
# tornado's own body limit (a bare 400) for API routes, which refuse larger bodies with 413 as they stream in and
# close the connection without reading the rest
STREAMED_BODY_TRANSPORT_LIMIT = 1 << 50

# failures answered with a status of their own (4xx/503): logged without a traceback
EXPECTED_ERRORS = (
    tornado.web.HTTPError, OperationError, PyMongoError, BSONError, OverflowError, TryAgainLater, MQSError
)  # fmt: skip


def encode(obj: Any) -> bytes:
    """``obj`` as compact UTF-8 JSON (orjson: about 15 times faster than ``json.dumps`` on a taskforce); a string
    UTF-8 cannot carry (a lone surrogate a client sent as ``\\ud800``, echoed in an error) is escaped instead."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(obj, separators=(",", ":")).encode()


USERS = frozenset({Role.USER, Role.ADMIN})
TMS = frozenset({Role.TMS, Role.ADMIN})
ANYONE = frozenset({Role.USER, Role.TMS, Role.ADMIN})


class Problem(tornado.web.HTTPError):
    """An error answered as problem details."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, reason=HTTPStatus(status).phrase)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def json_too_deep(value: Any, limit: int) -> bool:
    """True when ``value`` nests objects or arrays more than ``limit`` levels (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _after_body(method: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Run a route's method only once its body has arrived, been parsed and been validated."""

    @functools.wraps(method)
    async def run(self: BaseHandler, *args: Any, **kwargs: Any) -> None:
        if self._finished:  # refused while the body streamed in
            return
        self._parse_body(self.request.method or "GET")
        await method(self, *args, **kwargs)

    return run


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """Common behaviour of every route; subclasses set ``ROUTE`` (the OpenAPI path) and ``ROLES`` per method."""

    ROUTE: ClassVar[str]
    ROLES: ClassVar[dict[str, frozenset[Role]]] = {}  # method -> roles allowed; a method not listed is public

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("get", "post", "patch"):
            if name in cls.__dict__:
                setattr(cls, name, _after_body(cls.__dict__[name]))

    def initialize(self, wms: WMS) -> None:
        """Receive the service (tornado passes it from the route table)."""
        self.wms = wms
        self.caller: Caller | None = None
        self.body: Any = None
        self.query_params: dict[str, Any] = {}
        self._chunks = bytearray()
        self._started = time.perf_counter()
        if isinstance(self.request.connection, HTTP1Connection):  # data_received enforces MAX_BODY_BYTES with a 413
            self.request.connection.set_max_body_size(STREAMED_BODY_TRANSPORT_LIMIT)

    # ---- request preparation -------------------------------------------------------------------------------
    async def prepare(self) -> None:
        """Authenticate, authorize, and check ``Content-Length`` and the parameters, before any body is read."""
        method = self.request.method or "GET"
        if method not in self.allowed_methods():
            raise Problem(405, f"{method} is not supported on {self.request.path}")
        roles = self.ROLES.get(method)
        if roles is not None:
            try:
                self.caller = self.authenticate()
            except AuthError as exc:
                raise Problem(401, str(exc), headers=BEARER_CHALLENGE) from exc
            if not self.caller.roles & roles:
                allowed = ", ".join(sorted(str(r) for r in roles))
                raise Problem(403, f"this route needs one of the roles: {allowed}")
        declared = self.request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.wms.config.max_body_bytes:
            raise Problem(413, f"request body exceeds {self.wms.config.max_body_bytes} bytes")
        params = {
            "path": dict(self.path_kwargs),
            "query": {k: self.get_query_argument(k) for k in self.request.query_arguments},
        }
        try:
            self.query_params = self.wms.spec.validate_parameters(self.ROUTE, method, params)["query"]
        except SchemaViolation as exc:
            raise Problem(400, str(exc), errors=exc.messages) from exc

    def authenticate(self) -> Caller:
        """The caller presenting the request's bearer token; raises AuthError."""
        return self.wms.auth.authenticate(self.request.headers.get("Authorization"))

    def data_received(self, chunk: bytes) -> None:
        """Keep the body up to ``MAX_BODY_BYTES``; past it, answer 413 and let the connection close unread."""
        if self._finished:
            return
        self._chunks += chunk
        if len(self._chunks) > self.wms.config.max_body_bytes:
            self._chunks = bytearray()
            problem = Problem(413, f"request body exceeds {self.wms.config.max_body_bytes} bytes")
            self.send_error(413, exc_info=(Problem, problem, None))

    def _parse_body(self, method: str) -> None:
        spec = self.wms.spec
        raw, self._chunks = bytes(self._chunks), bytearray()
        try:
            op = spec.operation(self.ROUTE, method)
            if raw.strip():
                try:
                    self.body = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
                    raise Problem(400, f"request body is not valid JSON: {exc}") from exc
                if json_too_deep(self.body, self.wms.config.max_json_depth):
                    raise Problem(400, f"request body nests deeper than {self.wms.config.max_json_depth} levels")
                if "requestBody" not in op and self.body != {}:
                    raise Problem(400, "this route takes no request body")
            elif op.get("requestBody", {}).get("required"):
                raise Problem(400, "a JSON request body is required")
            else:
                self.body = {}
            if "requestBody" in op:
                spec.validate_body(self.ROUTE, method, self.body)
        except SchemaViolation as exc:
            raise Problem(400, str(exc), errors=exc.messages) from exc

    # ---- helpers for subclasses ------------------------------------------------------------------------------
    def require_caller(self) -> Caller:
        """The authenticated caller (routes with roles always have one)."""
        assert self.caller is not None
        return self.caller

    def compute_etag(self) -> None:
        """No ETag: API responses change with every status update, and hashing each body costs CPU."""
        return None

    def send(self, obj: Any, status: int = 200) -> None:
        """Answer with a JSON body."""
        self.send_encoded(encode(obj), status)

    def send_encoded(self, body: bytes, status: int = 200) -> None:
        """Answer with a body already encoded as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(body)

    # ---- errors and metrics ------------------------------------------------------------------------------------
    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Render every error as problem details; database outages become 503."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        detail = HTTPStatus(status_code).phrase
        errors: list[str] | None = None
        if isinstance(exc, Problem):
            detail, errors = exc.detail, exc.errors
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, OperationError):
            status_code, detail = exc.status, exc.detail
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, TryAgainLater | MQSError):
            status_code, detail = 503, f"the message queue service is unavailable; try again shortly ({exc})"
            self.set_header("Retry-After", "5")
        elif isinstance(exc, ConnectionFailure):
            status_code, detail = 503, "the database is unreachable; try again shortly"
            self.set_header("Retry-After", "5")
        elif isinstance(exc, BSONError | OverflowError):
            status_code, detail = 400, f"a value cannot be stored or queried: {exc}"
        elif isinstance(exc, OperationFailure):
            status_code, detail = 400, f"the database refused the operation: {exc.details or exc}"
        elif isinstance(exc, PyMongoError):
            status_code, detail = 503, f"database error: {exc}"
        elif isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            detail = exc.log_message
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        # the detail also goes in the reason phrase: what RestClient and raise_for_status show (as upstream does)
        self.set_status(status_code, reason=reason_phrase(detail, HTTPStatus(status_code).phrase))
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": HTTPStatus(status_code).phrase,
            "status": status_code,
            "detail": detail,
            "instance": self.request.path,
            "code": status_code,
            "error": detail,
        }
        if errors:
            body["errors"] = errors
        self.set_header("Content-Type", PROBLEM_JSON)
        self.finish(encode(body))

    def allowed_methods(self) -> list[str]:
        """The HTTP methods this route implements."""
        return [
            m for m in ("GET", "POST", "PATCH") if getattr(type(self), m.lower()) is not getattr(BaseHandler, m.lower())
        ]

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Expected errors are logged briefly; only real bugs get a traceback."""
        if isinstance(value, EXPECTED_ERRORS):
            LOGGER.info("%s %s -> %s", self.request.method, self.request.path, value)
        else:
            super().log_exception(typ, value, tb)

    def on_finish(self) -> None:
        """Record the request in the Prometheus metrics."""
        self.wms.metrics.observe(
            self.ROUTE, self.request.method or "GET", self.get_status(), time.perf_counter() - self._started
        )


class NotFoundHandler(BaseHandler):
    """Any path outside the route table."""

    ROUTE = "(unknown)"

    async def prepare(self) -> None:
        """Answer 404 for every method."""
        raise Problem(404, f"no route {self.request.path}")
