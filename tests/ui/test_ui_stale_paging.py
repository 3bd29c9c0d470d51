"""The dashboard in headless Chromium: a stale-data banner (with the stale list dimmed) while refreshes fail, gone
at the next successful one; and the workflow list paged beyond one page (keyset cursors, previous and next)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import workflow_request
from test_ui_browser import LIVE_TIMEOUT_MS, call, sign_in

from wms.auth import Role

pytestmark = pytest.mark.long_file

BACKOFF_TIMEOUT_MS = 40_000  # after a few failures the page retries every 8 s, then 16 s
PAGE_SIZE = 100  # app.js PAGE_SIZE
DASH = "\N{EN DASH}"  # the page writes ranges with an en dash
UNAVAILABLE = {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": "database is away"}


def test_stale_banner_while_refreshes_fail(  # type: ignore[no-untyped-def]
    browser, wms_process, make_token, screenshot: Callable[..., Path]
) -> None:
    url, alice = wms_process, make_token(Role.USER, "alice")
    wid = call(url, alice, "POST", "/v0/workflows", workflow_request())["workflow"]["workflow_id"]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, url, alice)
    page.get_by_text("Live · updated").wait_for(timeout=LIVE_TIMEOUT_MS)
    table, banner = page.locator("table.workflows"), page.locator("#stale")
    assert not banner.is_visible() and table.evaluate("e => getComputedStyle(e).opacity") == "1"

    # the WMS answers 5xx: the banner says the data is stale and since when; the old rows stay, dimmed
    def unavailable(route: Any) -> None:
        route.fulfill(status=503, content_type="application/problem+json", body=json.dumps(UNAVAILABLE))

    page.route("**/v0/query/workflows", unavailable)
    alert = page.get_by_role("alert").filter(has_text="The data shown is stale")
    alert.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert "Service Unavailable (503) — database is away" in alert.inner_text()
    since = alert.locator("time")
    assert since.inner_text() and f"last updated at {since.inner_text()}." in alert.inner_text()
    stamp = since.get_attribute("datetime") or ""
    last_ok = datetime.fromisoformat(stamp)
    assert abs(last_ok.timestamp() - page.evaluate("Date.now() / 1000")) < LIVE_TIMEOUT_MS / 1000
    assert since.get_attribute("title")  # the absolute time
    assert page.get_by_role("button", name=wid).is_visible()
    assert table.evaluate("e => getComputedStyle(e).opacity") == "0.5"
    assert table.evaluate("e => getComputedStyle(e).filter") == "grayscale(1)"
    screenshot(page, "stale-banner")

    # the network fails: the banner stays (written once) with the new reason
    page.unroute("**/v0/query/workflows")
    page.route("**/v0/query/**", lambda route: route.abort())
    alert.get_by_text("Cannot reach the WMS").wait_for(timeout=BACKOFF_TIMEOUT_MS)
    assert since.get_attribute("datetime") == stamp  # still since the last successful refresh

    # the next successful refresh removes the banner and the dimming
    page.unroute("**/v0/query/**")
    alert.wait_for(state="hidden", timeout=BACKOFF_TIMEOUT_MS)
    assert table.evaluate("e => getComputedStyle(e).opacity") == "1"
    assert page.get_by_text("Live · updated").is_visible()
    page.close()


def test_paging_beyond_one_page(browser, spawn_wms, make_token) -> None:  # type: ignore[no-untyped-def]
    url = spawn_wms(MAX_ACTIVE_WORKFLOWS_PER_USER="200").url
    alice = make_token(Role.USER, "alice")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {alice}"}, timeout=30) as client:
        ids = []
        for _ in range(PAGE_SIZE + 1):  # just over one page
            response = client.post("/v0/workflows", json=workflow_request())
            assert response.status_code == 200, response.text
            ids.append(response.json()["workflow"]["workflow_id"])

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    sign_in(page, url, alice)
    info = page.locator("#page-info")
    info.get_by_text(f"Showing workflows 1{DASH}100 (page 1, in creation order); more on the next page.").wait_for(
        timeout=LIVE_TIMEOUT_MS
    )
    rows = page.locator("tr.wf")
    assert rows.count() == PAGE_SIZE and page.locator("#count").inner_text() == "(100)"
    assert (
        page.get_by_role("button", name=ids[0]).is_visible() and page.get_by_role("button", name=ids[-1]).count() == 0
    )
    # every row has its taskforces' phases (asked for in chunks: one `$in` of 100 ids is refused)
    page.locator("td[data-label=Taskforces]", has_text="none").first.wait_for(state="detached")
    assert page.get_by_role("button", name="Previous page").is_disabled()

    page.get_by_role("button", name="Next page").click()
    info.get_by_text(f"Showing workflows 101{DASH}101 (page 2, in creation order).").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert rows.count() == 1 and page.get_by_role("button", name=ids[-1]).is_visible()
    assert page.get_by_role("button", name="Next page").is_disabled()
    page.get_by_text("Live · updated").wait_for(timeout=LIVE_TIMEOUT_MS)
    page.wait_for_timeout(2500)  # the page keeps refreshing page 2, not page 1
    assert rows.count() == 1

    page.get_by_role("button", name="Previous page").click()
    info.get_by_text(f"Showing workflows 1{DASH}100").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert rows.count() == PAGE_SIZE and page.get_by_role("button", name=ids[0]).is_visible()

    # another selection starts again at its first page
    page.get_by_role("button", name="Next page").click()
    info.get_by_text("page 2").wait_for(timeout=LIVE_TIMEOUT_MS)
    page.get_by_label("Show").select_option("all")
    info.get_by_text(f"Showing workflows 1{DASH}100 (page 1").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert not console_errors, console_errors
    page.close()
