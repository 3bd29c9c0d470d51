"""The dashboard page and its assets: content types, cache headers, security headers, and 404s that name no file."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

import wms

REPO_ROOT = str(Path(wms.__file__).resolve().parent.parent)


async def test_page_and_assets(wms_server) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=wms_server.url) as client:
        for path in ("/ui", "/ui/"):
            page = await client.get(path)
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert page.headers["cache-control"] == "no-cache"
            assert "script-src 'self'" in page.headers["content-security-policy"]
            assert page.headers["x-content-type-options"] == "nosniff"
        assets = dict(re.findall(r'(?:href|src)="(/ui/static/([\w.-]+)\?v=\w+)"', page.text))
        assert sorted(assets.values()) == ["app.js", "style.css"]
        expected = {"app.js": "javascript", "style.css": "text/css"}
        for url, name in assets.items():
            versioned = await client.get(url)
            assert versioned.status_code == 200 and expected[name] in versioned.headers["content-type"]
            assert "immutable" in versioned.headers["cache-control"]
            plain = await client.get(f"/ui/static/{name}")
            assert plain.headers["cache-control"] == "no-cache" and plain.content == versioned.content
            again = await client.get(f"/ui/static/{name}", headers={"If-None-Match": plain.headers["etag"]})
            assert again.status_code == 304


async def test_unknown_assets_are_404_without_filesystem_paths(wms_server) -> None:  # type: ignore[no-untyped-def]
    paths = [
        "/ui/static/missing.js",
        "/ui/static/index.html",
        "/ui/static/",
        "/ui/static/sub/app.js",
        "/ui/static/..%2F..%2Fserver.py",
        "/ui/static/%2e%2e/%2e%2e/handlers/ui.py",
        "/ui/elsewhere",
    ]
    async with httpx.AsyncClient(base_url=wms_server.url) as client:
        for path in paths:
            response = await client.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"].startswith("application/problem+json"), path
            assert REPO_ROOT not in response.text, response.text
        missing = await client.get("/ui/static/missing.js")
        assert missing.json()["detail"] == "no such dashboard file"
