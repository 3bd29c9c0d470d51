"""Markdown tables of declared settings (Docs/generate_settings.py writes them to Docs/settings/)."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from ewms_settings.reader import Setting, declared


def _type_name(kind: Any) -> str:
    if isinstance(kind, type):
        return {"str": "text", "int": "integer", "float": "number", "bool": "boolean", "Path": "path"}.get(
            kind.__name__, kind.__name__
        )
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if len(args) == 1:
        return f"{_type_name(args[0])} or `none`"
    return "text"


def _default(f: dataclasses.Field[Any], spec: Setting) -> str:
    if spec.default_doc is not None:
        return spec.default_doc
    if f.default is dataclasses.MISSING:
        return "(empty)" if f.default_factory is not dataclasses.MISSING else "(required)"
    value = f.default
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value is None:
        return "(none)"
    if not isinstance(value, int | float) and not value:
        return "(empty)"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _accepted(spec: Setting, kind: Any) -> str:
    simple = spec.parse is None or kind in (str, Path, int, float)
    parts = [_type_name(kind) if simple else "see meaning"]
    if spec.choices:
        parts = ["one of " + ", ".join(f"`{c}`" for c in spec.choices)]
    for word, bound in (("≥", spec.ge), (">", spec.gt), ("≤", spec.le)):
        if bound is not None:
            parts.append(f"{word} {bound:g}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def table(cls: type) -> str:
    """One row per setting of dataclass ``cls``: variable (and aliases), accepted values, default, meaning."""
    hints = typing.get_type_hints(cls)
    rows = ["| variable | accepted | default | meaning |", "|---|---|---|---|"]
    for f, spec in declared(cls):
        names = " (or ".join(f"`{n}`" for n in (spec.env, *spec.aliases)) + ")" * len(spec.aliases)
        cells = (names, _accepted(spec, hints[f.name]), _default(f, spec), spec.doc)
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows) + "\n"


def page(title: str, intro: str, classes: list[type], source: Path) -> str:
    """A whole generated page: title, introduction, the tables of ``classes``, and where they come from."""
    lines = [f"# {title}", "", intro.strip(), ""]
    for cls in classes:
        if len(classes) > 1:
            lines += [f"## {cls.__name__}", "", (cls.__doc__ or "").strip().splitlines()[0], ""]
        lines += [table(cls)]
    lines += [
        f"Generated from the dataclasses in `{source.as_posix()}` by `Docs/generate_settings.py`; do not edit.",
        "Unset or blank variables take the default; booleans accept true/false, 1/0, yes/no, on/off.",
    ]
    return "\n".join(lines) + "\n"
