#!/usr/bin/env python3
"""Generate Docs/reference/: one page per object (components.schemas) and per route group (tag) from
Docs/openapi.json. `python Docs/generate_reference.py` rewrites the pages; `--check` fails if they are stale
(tests/wms/test_reference_docs.py runs it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
OUT = DOCS / "reference"


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](../objects/{name}.md)"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    kinds = kind if isinstance(kind, list) else [kind]
    if "array" in kinds and "items" in schema:
        return f"array of {_type(schema['items'])}"
    if "object" in kinds and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {_type(schema['additionalProperties'])}"
    if "oneOf" in schema or "anyOf" in schema:
        return " or ".join(_type(s) for s in schema.get("oneOf", schema.get("anyOf", [])))
    return " or ".join(f"`{k}`" for k in kinds)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def object_page(name: str, schema: dict[str, Any]) -> str:
    """Markdown for one object."""
    lines = [f"# {name}", "", _cell(schema.get("description", "")), ""]
    props = schema.get("properties", {})
    if props:
        required = set(schema.get("required", []))
        lines += ["| field | type | required | description |", "|---|---|---|---|"]
        for field, sub in props.items():
            desc = _cell(sub.get("description", ""))
            lines.append(f"| `{field}` | {_type(sub)} | {'yes' if field in required else 'no'} | {desc} |")
    else:
        lines.append(f"Type: {_type(schema)}")
    return "\n".join(lines).rstrip() + "\n"


def _prefixes(servers: list[dict[str, Any]]) -> str:
    return ", ".join(f"`{s['url']}`" for s in servers)


def route_page(tag: str, operations: list[tuple[str, str, dict[str, Any]]], spec: dict[str, Any]) -> str:
    """Markdown for one route group."""
    lines = [f"# Routes: {tag}", "", f"Each path is served under every prefix: {_prefixes(spec['servers'])}.", ""]
    for method, path, op in operations:
        lines += [f"## `{method.upper()} {path}`", ""]
        if "servers" in spec["paths"][path]:
            lines += [f"Served under: {_prefixes(spec['paths'][path]['servers'])} only.", ""]
        lines += [f"**{_cell(op.get('summary', ''))}**", ""]
        lines += [op.get("description", "").strip(), ""]
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if body:
            lines += [f"Request body: {_type(body)}{'' if op['requestBody'].get('required') else ' (optional)'}", ""]
        lines += ["| status | meaning |", "|---|---|"]
        for status, response in op["responses"].items():
            desc = response.get("description") or response.get("$ref", "").rsplit("/", 1)[-1]
            lines.append(f"| {status} | {_cell(desc)} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render(spec: dict[str, Any]) -> dict[Path, str]:
    """Every page, by path."""
    pages: dict[Path, str] = {}
    for name, schema in sorted(spec["components"]["schemas"].items()):
        pages[OUT / "objects" / f"{name}.md"] = object_page(name, schema)
    groups: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in {"get", "post", "patch", "put", "delete"}:
                groups.setdefault((op.get("tags") or ["other"])[0], []).append((method, path, op))
    for tag, ops in sorted(groups.items()):
        pages[OUT / "routes" / f"{tag}.md"] = route_page(tag, ops, spec)
    index = ["# API reference", "", "Generated from `Docs/openapi.json` by `Docs/generate_reference.py`.", ""]
    index += ["## Route groups", ""] + [f"- [{t}](routes/{t}.md)" for t in sorted(groups)] + [""]
    index += ["## Objects", ""] + [f"- [{n}](objects/{n}.md)" for n in sorted(spec["components"]["schemas"])]
    pages[OUT / "README.md"] = "\n".join(index) + "\n"
    return pages


def main(argv: list[str]) -> int:
    """Write the pages, or with --check report stale or missing ones."""
    pages = render(json.loads((DOCS / "openapi.json").read_text()))
    if "--check" in argv:
        stale = [str(p) for p, text in pages.items() if not p.exists() or p.read_text() != text]
        existing = {p for p in OUT.rglob("*.md")} if OUT.exists() else set()
        stale += [str(p) for p in existing - set(pages)]
        if stale:
            print("stale reference pages (run python Docs/generate_reference.py):\n" + "\n".join(stale))
            return 1
        return 0
    for path, text in pages.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for path in set(OUT.rglob("*.md")) - set(pages):
        path.unlink()
    print(f"wrote {len(pages)} pages under {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
