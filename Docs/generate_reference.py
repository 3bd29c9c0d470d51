#!/usr/bin/env python3
"""Generate Docs/reference/: one page per object (components.schemas) and per route group (tag) from
Docs/openapi.json. Each field and parameter shows its type, format (constraints and default) and an example.
`python Docs/generate_reference.py` rewrites the pages; `--check` fails if they are stale
(tests/wms/test_reference_docs.py runs it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
OUT = DOCS / "reference"
SCHEMAS = "#/components/schemas/"
LONGEST_INLINE_EXAMPLE = 100
SIZES = [
    ("minLength", "at least", "character"), ("maxLength", "at most", "character"),
    ("minItems", "at least", "item"), ("maxItems", "at most", "item"),
    ("minProperties", "at least", "key"), ("maxProperties", "at most", "key"),
]


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """The node a `$ref` points to (followed until it is not a reference), or the node itself."""
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def object_name(ref: str) -> str | None:
    """The object a reference names when it points at a whole object (`#/components/schemas/Name`), else None."""
    rest = ref.removeprefix(SCHEMAS)
    return rest if ref.startswith(SCHEMAS) and "/" not in rest else None


def origin(ref: str) -> str:
    """`Object.field` for a reference into an object's properties, as a link to that object's page."""
    name, _, field = ref.removeprefix(SCHEMAS).partition("/properties/")
    return f"[{name}](../objects/{name}.md)`.{field}`"


def type_of(spec: dict[str, Any], schema: dict[str, Any]) -> str:
    """The type in words: JSON types, arrays and maps of their items, and links to object pages."""
    if "$ref" in schema:
        name = object_name(schema["$ref"])
        return f"[{name}](../objects/{name}.md)" if name else type_of(spec, resolve(spec, schema))
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            return " or ".join(type_of(spec, s) for s in schema[combinator])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    kind = schema.get("type", "any")
    kinds = kind if isinstance(kind, list) else [kind]
    words = []
    for k in kinds:
        if k == "array" and "items" in schema:
            words.append(f"array of {type_of(spec, schema['items'])}")
        elif k == "object" and isinstance(schema.get("additionalProperties"), dict):
            words.append(f"object of {type_of(spec, schema['additionalProperties'])}")
        else:
            words.append(f"`{k}`")
    return " or ".join(words)


def format_of(schema: dict[str, Any]) -> str:
    """The value's format and constraints in words (format, enum, pattern, bounds, sizes)."""
    words = []
    if "format" in schema:
        words.append(f"format `{schema['format']}`")
    if "enum" in schema:
        words.append("one of " + ", ".join(f"`{json.dumps(v)}`" for v in schema["enum"]))
    if "pattern" in schema:
        words.append(f"matches `{schema['pattern']}`")
    for key, word in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in schema:
            words.append(f"{word} {schema[key]}")
    for key, bound, unit in SIZES:
        if key in schema:
            words.append(f"{bound} {schema[key]} {unit}{'' if schema[key] == 1 else 's'}")
    if schema.get("uniqueItems"):
        words.append("items unique")
    if "pattern" in schema.get("propertyNames", {}):
        words.append(f"keys match `{schema['propertyNames']['pattern']}`")
    if isinstance(schema.get("items"), dict) and "$ref" not in schema["items"] and format_of(schema["items"]):
        words.append(f"each item {format_of(schema['items'])}")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and "$ref" not in extra and format_of(extra):
        words.append(f"each value {format_of(extra)}")
    if schema.get("deprecated"):
        words.append("deprecated")
    return "; ".join(words)


def example_of(schema: dict[str, Any]) -> Any:
    """The schema's own example (`examples[0]` or `example`), or None."""
    if schema.get("examples"):
        return schema["examples"][0]
    return schema.get("example")


def _code(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def field_row(spec: dict[str, Any], field: str, sub: dict[str, Any], required: bool, parent_example: Any) -> str:
    """One table row: field, type, format, required (or default), example, description."""
    target = resolve(spec, sub)
    description = target.get("description", "")
    if "$ref" in sub and not object_name(sub["$ref"]):
        description = f"{description} Same as {origin(sub['$ref'])}.".strip()
    example = example_of(target)
    if example is None and isinstance(parent_example, dict) and field in parent_example:
        candidate = _code(parent_example[field])
        example = parent_example[field] if len(candidate) <= LONGEST_INLINE_EXAMPLE else None
    linked = object_name(sub.get("$ref", "")) or object_name(sub.get("items", {}).get("$ref", ""))
    shown = _code(example) if example is not None else (f"see [{linked}](../objects/{linked}.md)" if linked else "")
    need = "yes" if required else ("no, default " + _code(target["default"]) if "default" in target else "no")
    cells = [f"`{field}`", type_of(spec, sub), format_of(target), need, shown, description]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def object_page(spec: dict[str, Any], name: str, schema: dict[str, Any]) -> str:
    """Markdown for one object: its fields (or its type), then its full example when it has one."""
    lines = [f"# {name}", "", _cell(schema.get("description", "")), ""]
    props = schema.get("properties", {})
    example = example_of(schema)
    if props:
        required = set(schema.get("required", []))
        lines += ["| field | type | format | required | example | description |", "|---|---|---|---|---|---|"]
        lines += [field_row(spec, f, sub, f in required, example) for f, sub in props.items()]
        if schema.get("additionalProperties") is False:
            lines += ["", "No other fields are accepted."]
    else:
        lines.append(f"Type: {type_of(spec, schema)}")
        if format_of(schema):
            lines += ["", f"Format: {format_of(schema)}"]
    if example is not None:
        lines += ["", "## Example", "", "```json", json.dumps(example, indent=2, ensure_ascii=False), "```"]
    return "\n".join(lines).rstrip() + "\n"


def parameter_rows(spec: dict[str, Any], params: list[dict[str, Any]]) -> list[str]:
    """The parameter table of one route."""
    lines = ["| parameter | in | type | format | required | example | description |", "|---|---|---|---|---|---|---|"]
    for param in (resolve(spec, p) for p in params):
        schema = param.get("schema", {})
        target = resolve(spec, schema)
        example = param.get("example", example_of(target))
        shape = "; ".join(w for w in (format_of(target), "deprecated" if param.get("deprecated") else "") if w)
        cells = [f"`{param['name']}`", param["in"], type_of(spec, schema), shape,
                 "yes" if param.get("required") else "no", _code(example) if example is not None else "",
                 param.get("description", "")]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _prefixes(servers: list[dict[str, Any]]) -> str:
    return ", ".join(f"`{s['url']}`" for s in servers)


def route_page(spec: dict[str, Any], tag: str, operations: list[tuple[str, str, dict[str, Any], list[Any]]]) -> str:
    """Markdown for one route group: per route its summary, prefixes, parameters, request body and responses."""
    lines = [f"# Routes: {tag}", "", f"Each path is served under every prefix: {_prefixes(spec['servers'])}.", ""]
    for method, path, op, params in operations:
        lines += [f"## `{method.upper()} {path}`", ""]
        if "servers" in spec["paths"][path]:
            lines += [f"Served under: {_prefixes(spec['paths'][path]['servers'])} only.", ""]
        lines += [f"**{_cell(op.get('summary', ''))}**", ""]
        lines += [op.get("description", "").strip(), ""]
        if params:
            lines += [*parameter_rows(spec, params), ""]
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if body:
            optional = "" if op["requestBody"].get("required") else " (optional)"
            lines += [f"Request body: {type_of(spec, body)}{optional}", ""]
        lines += ["| status | meaning | body |", "|---|---|---|"]
        for status, response in op["responses"].items():
            target = resolve(spec, response)
            bodies = [type_of(spec, c["schema"]) for c in target.get("content", {}).values() if "schema" in c]
            lines.append(f"| {status} | {_cell(target.get('description', ''))} | {_cell(' or '.join(bodies))} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render(spec: dict[str, Any]) -> dict[Path, str]:
    """Every page, by path."""
    pages: dict[Path, str] = {}
    for name, schema in sorted(spec["components"]["schemas"].items()):
        pages[OUT / "objects" / f"{name}.md"] = object_page(spec, name, schema)
    groups: dict[str, list[tuple[str, str, dict[str, Any], list[Any]]]] = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in {"get", "post", "patch", "put", "delete"}:
                params = [*item.get("parameters", []), *op.get("parameters", [])]
                groups.setdefault((op.get("tags") or ["other"])[0], []).append((method, path, op, params))
    for tag, ops in sorted(groups.items()):
        pages[OUT / "routes" / f"{tag}.md"] = route_page(spec, tag, ops)
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
