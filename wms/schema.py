"""The OpenAPI document as the single source of truth: validators for requests and stored objects."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:ewms:wms-openapi"


@cache
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    """The pattern with ECMA-262's ``$`` (end of input only; Python's ``$`` also matches before a final newline)."""
    out, in_class, escaped = [], False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "$" and not in_class:
            char = r"\Z"
        out.append(char)
    return re.compile("".join(out))


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


class SchemaViolation(ValueError):
    """A document does not match its schema; ``messages`` lists every problem found."""

    def __init__(self, what: str, messages: list[str]) -> None:
        super().__init__(f"{what}: " + "; ".join(messages))
        self.messages = messages


def _describe(error: ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where or '(body)'}: {error.message}{_near_matches(error)}"


def _near_matches(error: ValidationError) -> str:
    """For unknown properties, `` (did you mean 'x'?)`` naming the known ones they closely resemble (typos)."""
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return ""
    known = list(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
    guesses = [
        f"{near[0]!r} for {name!r}"
        for name in error.instance
        if name not in known and (near := difflib.get_close_matches(str(name), known, n=1))
    ]
    return f" (did you mean {', '.join(guesses)}?)" if guesses else ""


class Spec:
    """Loaded OpenAPI document with cached validators."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.doc: dict[str, Any] = json.loads(self.path.read_text())
        resource = Resource.from_contents(self.doc, default_specification=DRAFT202012)
        self._registry: Registry = Registry().with_resource(SPEC_URI, resource)
        self._validators: dict[str, Any] = {}
        self._parameter_lists: dict[tuple[str, str], list[tuple[dict[str, Any], str]]] = {}

    def _validator(self, pointer: str) -> Any:
        if pointer not in self._validators:
            schema = self._inline({"$ref": f"#{pointer}"}, frozenset())
            self._validators[pointer] = Validator(schema, registry=self._registry)
        return self._validators[pointer]

    def _inline(self, node: Any, seen: frozenset[str]) -> Any:
        """A copy of a schema with every local ``$ref`` replaced by its target, so that validating resolves no
        references (that lookup was most of the cost); a recursive reference stays, resolved by the registry."""
        if isinstance(node, list):
            return [self._inline(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/") and len(node) == 1:
            if ref in seen:
                return {"$ref": SPEC_URI + ref}
            return self._inline(self._deref(node), seen | {ref})
        return {key: self._inline(value, seen) for key, value in node.items()}

    def _check(self, pointer: str, instance: Any, what: str) -> None:
        errors = sorted(self._validator(pointer).iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            raise SchemaViolation(what, [_describe(e) for e in errors[:10]])

    def operation(self, path: str, method: str) -> dict[str, Any]:
        """The operation object for a path template (as written in the document) and method."""
        return dict(self.doc["paths"][path][method.lower()])

    def validate_body(self, path: str, method: str, body: Any) -> None:
        """Validate a request body against the operation's ``application/json`` schema."""
        op = self.operation(path, method)
        content = op.get("requestBody", {}).get("content", {}).get("application/json")
        if content is None:
            return
        op_pointer = f"/paths/{_escape(path)}/{method.lower()}"
        pointer = f"{op_pointer}/requestBody/content/application~1json/schema"
        self._check(pointer, body, "invalid request body")

    def validate_parameters(
        self, path: str, method: str, values: dict[str, dict[str, str]]
    ) -> dict[str, dict[str, Any]]:
        """Validate path and query parameters; ``values`` maps location ("path"/"query") -> name -> text.

        Each text is first converted to its schema's type (``"5"`` for an integer is 5); the converted values are
        returned by location, those the document does not declare left out."""
        problems: list[str] = []
        converted: dict[str, dict[str, Any]] = {"path": {}, "query": {}}
        for param, schema_pointer in self._parameters(path, method):
            given = values.get(param["in"], {})
            name = param["name"]
            if name not in given:
                if param.get("required"):
                    problems.append(f"{param['in']} parameter '{name}' is required")
                continue
            validator = self._validator(schema_pointer)
            value = coerce(given[name], validator.schema)
            problems += [f"{param['in']} parameter '{name}': {e.message}" for e in validator.iter_errors(value)]
            converted.setdefault(param["in"], {})[name] = value
        if problems:
            raise SchemaViolation("invalid request parameters", problems)
        return converted

    def _parameters(self, path: str, method: str) -> list[tuple[dict[str, Any], str]]:
        """Each parameter of the operation (path-level ones included) with a pointer to its schema."""
        if (path, method) in self._parameter_lists:
            return self._parameter_lists[path, method]
        found = []
        for owner in (f"/paths/{_escape(path)}", f"/paths/{_escape(path)}/{method.lower()}"):
            node = self._deref({"$ref": "#" + owner})
            for index, param in enumerate(node.get("parameters", [])):
                where = param["$ref"].removeprefix("#") if "$ref" in param else f"{owner}/parameters/{index}"
                found.append((self._deref(param), f"{where}/schema"))
        self._parameter_lists[path, method] = found
        return found

    def _deref(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                key = part.replace("~1", "/").replace("~0", "~")
                target = target[int(key)] if isinstance(target, list) else target[key]
            node = target
        return dict(node)

    def validate_object(self, name: str, doc: dict[str, Any]) -> None:
        """Validate a whole stored object (e.g. ``TaskforceObject``) before it is written."""
        self._check(f"/components/schemas/{name}", doc, f"invalid {name}")

    def validate_fields(self, name: str, fields: dict[str, Any]) -> None:
        """Validate top-level fields of a partial update against the object's property schemas."""
        problems: list[str] = []
        for key, value in fields.items():
            if key not in self.doc["components"]["schemas"][name]["properties"]:
                problems.append(f"{key}: not a field of {name}")
                continue
            errors = self._validator(f"/components/schemas/{name}/properties/{key}").iter_errors(value)
            problems += [f"{key}: {e.message}" for e in errors]
        if problems:
            raise SchemaViolation(f"invalid update of {name}", problems)


def coerce(text: str, schema: Any) -> Any:
    """A parameter's text as its schema's type (integer, number or boolean), or unchanged when it is not one."""
    declared = schema.get("type") if isinstance(schema, dict) else None
    types = declared if isinstance(declared, list) else [declared]
    if "integer" in types and re.fullmatch(r"[+-]?[0-9]{1,18}", text):
        return int(text)
    if "number" in types and re.fullmatch(r"[0-9eE.+-]{1,40}", text):
        try:
            number = float(text)
        except ValueError:
            return text
        return number if math.isfinite(number) else text
    if "boolean" in types and text in ("true", "false"):
        return text == "true"
    return text


def _escape(path: str) -> str:
    return path.replace("~", "~0").replace("/", "~1")


@cache
def load(path: str) -> Spec:
    """Load (once per path) the OpenAPI document."""
    return Spec(path)
