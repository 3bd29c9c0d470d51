"""Docs/reference (a page per object and route group) is generated from Docs/openapi.json and kept up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "Docs"


def test_reference_pages_match_the_openapi_document() -> None:
    result = subprocess.run(
        [sys.executable, str(DOCS / "generate_reference.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_every_route_and_object_has_its_page() -> None:
    import json

    spec = json.loads((DOCS / "openapi.json").read_text())
    for name in spec["components"]["schemas"]:
        assert (DOCS / "reference" / "objects" / f"{name}.md").exists(), name
    routes_text = "".join(p.read_text() for p in (DOCS / "reference" / "routes").glob("*.md"))
    for path, item in spec["paths"].items():
        for method in item:
            if method in {"get", "post", "patch"}:
                assert f"`{method.upper()} {path}`" in routes_text, (method, path)
