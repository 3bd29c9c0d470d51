"""The README starts with a plain-words glossary, then the two commands (demo and tests) before any other command;
the dashboard doc explains every taskforce phase."""

from __future__ import annotations

import re
from pathlib import Path

from wms.lifecycle import Phase

ROOT = Path(__file__).resolve().parents[2]
TERMS = ["workflow", "task directive", "taskforce", "event", "pilot", "WMS", "MQS", "TMS"]


def test_readme_explains_the_terms_before_its_first_commands() -> None:
    text = (ROOT / "README.md").read_text()
    intro, _, rest = text.partition("```")
    assert [t for t in TERMS if f"**{t}**" not in intro] == []
    first_block = rest.split("```", 1)[0].splitlines()[1:]
    assert [line.split()[:2] for line in first_block] == [["bash", "scripts/demo.sh"], ["bash", "scripts/test.sh"]]


def test_dashboard_doc_lists_every_phase() -> None:
    table = (ROOT / "Docs" / "dashboard.md").read_text().split("## Phases", 1)[1].split("\n## ", 1)[0]
    assert [p.value for p in Phase] == re.findall(r"^\| `([a-z-]+)` \|", table, re.MULTILINE)
