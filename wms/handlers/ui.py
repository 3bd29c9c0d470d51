"""The web dashboard: the page at ``/ui`` and its assets under ``/ui/static/``.

These are not API routes: they take no token and skip the OpenAPI validation of ``BaseHandler``. The page itself
calls the REST API from the browser with the user's bearer token.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from pathlib import Path
from typing import Any

import tornado.template
import tornado.web

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
ASSET_MAX_AGE = 365 * 24 * 3600  # versioned asset URLs change whenever the file does

# the page loads only its own script and style sheet and talks only to its own origin
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_TEMPLATES = tornado.template.Loader(str(UI_DIR))


class _UIErrors(tornado.web.RequestHandler):
    """Security headers on every answer; errors as short problem details that never name a file."""

    def set_default_headers(self) -> None:
        """Add the security headers."""
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Answer with a generic problem-details body (tornado's messages may contain filesystem paths)."""
        self.clear_header("Cache-Control")
        self.set_header("Content-Type", "application/problem+json")
        detail = "no such dashboard file" if status_code in (403, 404) else HTTPStatus(status_code).phrase
        status = 404 if status_code == 403 else status_code  # a directory or a path outside the root: not found
        self.set_status(status)
        problem = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
        self.finish(json.dumps(problem))


class DashboardAssetHandler(_UIErrors, tornado.web.StaticFileHandler):
    """``/ui/static/<file>``: long-lived caching for versioned URLs (``?v=<hash>``), revalidation otherwise."""

    def set_extra_headers(self, path: str) -> None:
        """Versioned: cache for a year without revalidating; unversioned: revalidate (ETag) on every use."""
        if "v" in self.request.arguments:
            self.set_header("Cache-Control", f"public, max-age={ASSET_MAX_AGE}, immutable")
        else:
            self.set_header("Cache-Control", "no-cache")

    @classmethod
    def url(cls, name: str) -> str:
        """The versioned URL of an asset."""
        version = cls.get_version({"static_path": str(UI_DIR)}, name)
        return f"/ui/static/{name}?v={version}"


class DashboardHandler(_UIErrors):
    """``/ui`` and ``/ui/``: the single page, pointing at versioned asset URLs."""

    def get(self) -> None:
        """Render the page; it is never cached, so a new release is picked up at the next load."""
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(_TEMPLATES.load("index.html").generate(asset=DashboardAssetHandler.url))


ROUTES: list[Any] = [
    (r"/ui/?", DashboardHandler),
    # flat asset names only: no directories, no "..", no hidden files, not the page template
    (r"/ui/static/([A-Za-z0-9_-]+\.(?:js|css|svg|png|ico))", DashboardAssetHandler, {"path": str(UI_DIR)}),
]
