"""Declaring settings on dataclass fields and reading them from an environment mapping.

Rules shared by every component: a variable that is unset or blank (after stripping) takes the field's default
(unless the setting ``keeps_blank``); numbers must be finite; booleans are one of :data:`BOOLEANS`; an optional
value (``X | None``) may be written ``none``, and a number written ``none`` takes its default. Every problem found
is collected, and raised as one :class:`ConfigError` naming each variable and its value.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, TypeVar

METADATA_KEY = "ewms_setting"
BOOLEANS = {"true": True, "1": True, "yes": True, "y": True, "on": True}
BOOLEANS |= {"false": False, "0": False, "no": False, "n": False, "off": False}

T = TypeVar("T")


class ConfigError(ValueError):
    """One or more settings are missing or invalid; ``problems`` lists each one."""

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        text = self.problems[0] if len(self.problems) == 1 else "\n  - ".join(["invalid settings:", *self.problems])
        super().__init__(text)


@dataclass(frozen=True)
class Setting:
    """How one field is read from the environment and documented."""

    env: str
    doc: str
    aliases: tuple[str, ...] = ()
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple[str, ...] = ()
    parse: Callable[[str], Any] | None = None
    default_doc: str | None = None
    keeps_blank: bool = False

    def problem(self, value: Any) -> str | None:
        """Why a parsed ``value`` is out of bounds or not a choice (None when it is fine)."""
        if value is None:
            return None
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}"
        if self.ge is not None and value < self.ge:
            return "must not be negative" if self.ge == 0 else f"must be at least {self.ge:g}"
        if self.gt is not None and value <= self.gt:
            return "must be positive" if self.gt == 0 else f"must be greater than {self.gt:g}"
        if self.le is not None and value > self.le:
            return f"must be at most {self.le:g}"
        return None


def setting(
    env: str,
    doc: str,
    default: Any = MISSING,
    *,
    default_factory: Callable[[], Any] | Any = MISSING,
    aliases: tuple[str, ...] = (),
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    choices: tuple[str, ...] = (),
    parse: Callable[[str], Any] | None = None,
    default_doc: str | None = None,
    keeps_blank: bool = False,
    secret: bool = False,
) -> Any:
    """A dataclass field read from the variable ``env`` (then ``aliases``), described by ``doc`` (``secret``: left
    out of the dataclass's repr).

    ``parse`` turns the raw text into the value (raising ValueError with a phrase like "must be ..." when it cannot),
    for types other than str, int, float, bool and Path. ``default_doc`` documents a default computed when the
    component reads its settings (the field then needs none).
    """
    spec = Setting(env, doc, aliases, ge, gt, le, choices, parse, default_doc, keeps_blank)
    metadata = {METADATA_KEY: spec}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata, repr=not secret)
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


def declared(cls: type) -> list[tuple[dataclasses.Field[Any], Setting]]:
    """The fields of dataclass ``cls`` that are settings, in declaration order."""
    return [(f, f.metadata[METADATA_KEY]) for f in dataclasses.fields(cls) if METADATA_KEY in f.metadata]


def shell_words(raw: str) -> tuple[str, ...]:
    """``raw`` split like a POSIX shell would."""
    try:
        return tuple(shlex.split(raw))
    except ValueError as exc:
        raise ValueError(f"is not valid shell syntax: {exc}") from None


def _convert(raw: str, kind: Any) -> Any:
    """``raw`` as a value of type ``kind`` (str, bool, int, float, Path or one of them or None)."""
    args = typing.get_args(kind)
    if (typing.get_origin(kind) in (typing.Union, types.UnionType)) and type(None) in args:
        if raw.lower() == "none":
            return None
        (kind,) = [a for a in args if a is not type(None)]
    if kind is str:
        return raw
    if kind is bool:
        if raw.lower() not in BOOLEANS:
            raise ValueError("must be true or false")
        return BOOLEANS[raw.lower()]
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError("must be an integer") from None
    if kind is float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value
    if kind is Path:
        return Path(raw)
    raise TypeError(f"no reader for {kind!r}: declare the setting with parse=")


def read_one(environ: Mapping[str, str], spec: Setting, kind: Any, problems: list[str]) -> tuple[bool, Any]:
    """(present, value) of one setting; a present but invalid value is added to ``problems`` (value None)."""
    for name in (spec.env, *spec.aliases):
        raw = environ.get(name)
        if raw is None or not (raw.strip() or spec.keeps_blank):
            continue
        raw = raw.strip()
        if kind is float and raw.lower() == "none":
            continue  # a number written ``none`` (e.g. a pilot environment holding str(None)) takes the default
        try:
            value = spec.parse(raw) if spec.parse else _convert(raw, kind)
            why = spec.problem(value)
        except ValueError as exc:
            why = str(exc)
        if why:
            problems.append(f"{name}={raw!r} {why}")
            return True, None
        return True, value
    return False, None


def read(cls: type, environ: Mapping[str, str], problems: list[str]) -> dict[str, Any]:
    """The values of the settings of ``cls`` found in ``environ``, by field name; problems go to ``problems``
    (a missing setting that has neither a default nor a ``default_doc`` is one)."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f, spec in declared(cls):
        known_problems = len(problems)
        present, value = read_one(environ, spec, hints[f.name], problems)
        if not present and _required(f, spec):
            problems.append(f"{spec.env} is required")
        elif present and len(problems) == known_problems:
            values[f.name] = value
    return values


def _required(f: dataclasses.Field[Any], spec: Setting) -> bool:
    return f.default is MISSING and f.default_factory is MISSING and spec.default_doc is None


def load(cls: type[T], environ: Mapping[str, str]) -> T:
    """``cls`` built from ``environ``; raises one ConfigError listing every problem."""
    problems: list[str] = []
    values = read(cls, environ, problems)
    if problems:
        raise ConfigError(problems)
    return cls(**values)
