"""Docs/cli.md covers every `ewms` command and option, taken from the parser the CLI builds, and its phase table
lists every taskforce phase of wms/lifecycle.py."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

from wms.cli.main import build_parser
from wms.lifecycle import Phase

DOCS = Path(__file__).resolve().parents[2] / "Docs"
COMMON = {"-h", "--help", "--url", "--token"}  # documented once, under "Connecting"


def commands(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(`sub command path`, its parser) for every sub-command, nested ones (`dev up`) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{path} {name}".strip(), sub
                yield from commands(sub, f"{path} {name}".strip())


def blocks(text: str) -> list[str]:
    """The doc split into table rows and paragraphs."""
    out: list[str] = []
    for chunk in re.split(r"\n\s*\n", text):
        lines = chunk.splitlines()
        rows = [line for line in lines if line.startswith("|")]
        out += rows
        out.append("\n".join(line for line in lines if not line.startswith("|")))
    return out


def undocumented(doc: str, parser: argparse.ArgumentParser) -> list[str]:
    """Commands that no row or paragraph of the doc shows as `` `ewms <command>``, and options missing from it."""
    missing = []
    parts = blocks(doc)
    for path, sub in commands(parser):
        mention = re.compile(rf"`ewms {re.escape(path)}(?![\w-])")
        text = "\n".join(b for b in parts if mention.search(b))
        if not text:
            missing.append(f"ewms {path}")
            continue
        for action in sub._actions:
            for flag in set(action.option_strings) - COMMON:
                if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text):
                    missing.append(f"ewms {path} {flag}")
    return missing


def test_every_command_and_option_is_in_the_cli_doc() -> None:
    parser = build_parser()
    assert {"submit", "status", "dev", "dev up"} <= {path for path, _ in commands(parser)}
    assert undocumented((DOCS / "cli.md").read_text(), parser) == []


def test_a_missing_command_or_option_is_found() -> None:
    doc = "| `ewms submit FILE` | submit |\n\n| `ewms dev up [--detach]` | start |\n"
    missing = undocumented(doc, build_parser())
    assert "ewms submit --json" in missing and "ewms status" in missing and "ewms dev up --detach" not in missing


def test_every_phase_is_explained_in_the_cli_doc() -> None:
    table = (DOCS / "cli.md").read_text().split("### Taskforce phases", 1)[1].split("\n#", 1)[0]
    assert [p.value for p in Phase] == re.findall(r"^\| `([a-z-]+)` \|", table, re.MULTILINE)
