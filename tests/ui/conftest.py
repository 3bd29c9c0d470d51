"""Fixtures for the dashboard tests: a headless Chromium driven by Playwright."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """The system Chromium (Playwright's own browser builds are never downloaded)."""
    # a missing browser is a failure, not a skip: scripts/setup.sh installs chromium and playwright
    assert Path(CHROMIUM).exists(), "chromium is not installed (scripts/setup.sh installs it)"
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"  # kept after the run (gitignored)


@pytest.fixture
def screenshot() -> Callable[..., Path]:
    """Factory: ``screenshot(page, name)`` saves a full-page PNG in ``test-output/screenshots/`` (for a reviewer to
    look at after the run) and returns its path, checked to be a PNG."""
    folder = SCREENSHOTS
    folder.mkdir(parents=True, exist_ok=True)

    def _shoot(page: Any, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        return path

    return _shoot
