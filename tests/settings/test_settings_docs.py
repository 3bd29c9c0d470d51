"""Docs/settings (a page per component) is generated from the config dataclasses and kept up to date."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

DOCS = Path(__file__).resolve().parents[2] / "Docs"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_settings", DOCS / "generate_settings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_pages_match_the_dataclasses() -> None:
    result = subprocess.run(
        [sys.executable, str(DOCS / "generate_settings.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_stale_or_stray_page_fails_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = generator()
    monkeypatch.setattr(module, "OUT", tmp_path)
    assert module.main([]) == 0 and module.main(["--check"]) == 0
    page = tmp_path / "tms.md"
    page.write_text(page.read_text().replace("TMS_POLL_INTERVAL", "TMS_POLL_EVERY"))
    assert module.main(["--check"]) == 1
    module.main([])
    (tmp_path / "old.md").write_text("# gone\n")
    assert module.main(["--check"]) == 1


def test_every_declared_variable_is_on_its_page() -> None:
    from ewms_settings import declared

    module = generator()
    for name, (_, _, classes, _) in module.COMPONENTS.items():
        text = (DOCS / "settings" / f"{name}.md").read_text()
        for cls in classes:
            for _, spec in declared(cls):
                assert f"`{spec.env}`" in text, (name, spec.env)
