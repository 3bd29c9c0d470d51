"""The examples in Docs/openapi.json (shown on the generated reference pages) are valid, and every field a client
sends in a request body has one (or is an object whose own page shows its fields' examples)."""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
from referencing import Registry
from referencing.jsonschema import DRAFT202012

DOCS = Path(__file__).resolve().parents[2] / "Docs"
DOC = json.loads((DOCS / "openapi.json").read_text())
URI = "urn:ewms-wms:openapi"
REGISTRY = Registry().with_resource(URI, DRAFT202012.create_resource(DOC))
SCHEMAS = "#/components/schemas/"


def examples(node: Any, pointer: str = "#") -> Iterator[tuple[str, Any]]:
    """(pointer of the schema, example) for every `examples` item and parameter `example` in the document."""
    if isinstance(node, dict):
        if "in" in node and "example" in node:
            yield f"{pointer}/schema", node["example"]
        for value in node.get("examples", []) if isinstance(node.get("examples"), list) else []:
            yield pointer, value
        for key, child in node.items():
            yield from examples(child, f"{pointer}/{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from examples(child, f"{pointer}/{i}")


def request_objects() -> set[str]:
    """Names of the objects a client sends: request bodies and every object they reference, transitively."""
    todo = [
        op["requestBody"]["content"]["application/json"]["schema"]
        for item in DOC["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "requestBody" in op
    ]
    refs: set[str] = set()
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            if "$ref" in node and node["$ref"] not in refs:
                refs.add(node["$ref"])
                todo.append(resolve(node))
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return {ref.removeprefix(SCHEMAS) for ref in refs if ref.removeprefix(SCHEMAS).isidentifier()}


@functools.cache
def generator() -> ModuleType:
    """Docs/generate_reference.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("generate_reference", DOCS / "generate_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """The schema a `$ref` points to, as the generator resolves it."""
    resolved: dict[str, Any] = generator().resolve(DOC, node)
    return resolved


def test_every_example_is_valid_against_its_schema() -> None:
    found = list(examples(DOC))
    assert len(found) > 40
    for pointer, value in found:
        validator = jsonschema.Draft202012Validator({"$ref": URI + pointer}, registry=REGISTRY)
        errors = [e.message for e in validator.iter_errors(value)]
        assert errors == [], (pointer, value)


def test_every_request_field_has_an_example_or_its_own_page() -> None:
    names = request_objects()
    assert {"WorkflowRequest", "TaskRequest", "WorkerConfigRequest", "AddWorkersRequest"} <= names
    missing = []
    for name in sorted(names):
        schema = DOC["components"]["schemas"][name]
        whole = schema.get("examples", [{}])[0]
        for field, sub in schema.get("properties", {}).items():
            target = resolve(sub)
            items = target.get("items", {}) if isinstance(target.get("items"), dict) else {}
            own_page = any(n.get("$ref", "").removeprefix(SCHEMAS).isidentifier() for n in (sub, items))
            if not (target.get("examples") or own_page or (isinstance(whole, dict) and field in whole)):
                missing.append(f"{name}.{field}")
    assert missing == []


def test_a_wrong_example_is_caught() -> None:
    validator = jsonschema.Draft202012Validator({"$ref": URI + SCHEMAS + "AddWorkersRequest"}, registry=REGISTRY)
    assert not validator.is_valid({"cluster_location": "sub-2", "n_workers": 0})
