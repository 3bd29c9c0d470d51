"""The dashboard in headless Chromium: the sign-in link `ewms dev up` prints (token in the URL fragment), and the
human names and queue aliases of a workflow and its tasks."""

from __future__ import annotations

from pathlib import Path

import httpx

from ewms_dev.factories import task_request, workflow_request
from wms.auth import Role


def test_sign_in_link_names_and_aliases(browser, wms_process, make_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, alice = wms_process, make_token(Role.USER, "alice")
    request = workflow_request(name="nightly copy", tasks=[task_request(name="copier")])
    response = httpx.post(f"{url}/v0/workflows", json=request, headers={"Authorization": f"Bearer {alice}"})
    assert response.status_code == 200, response.text
    wid = response.json()["workflow"]["workflow_id"]

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{url}/ui/#token={alice}")  # what `ewms dev up` prints (commands_dev.dashboard_link)
    page.get_by_text("Signed in as alice (user)").wait_for()
    assert "token" not in page.url  # taken out of the address bar (and history)
    row = page.locator("tr.wf", has=page.get_by_role("button", name=wid))
    row.locator(".name", has_text="nightly copy").wait_for()  # the first refresh may end after the sign-in
    row.get_by_role("button", name=wid).click()
    task = page.locator("section.task")
    task.locator("h3", has_text="copier").wait_for()
    queues = {
        fact.locator("dt").text_content(): fact.locator("dd").text_content()
        for fact in task.locator(".facts > div").all()
    }
    assert (queues["Input queues"], queues["Output queues"]) == ("in", "out")  # aliases, not queue ids
    page.screenshot(path=str(tmp_path / "signin-link-names.png"))

    page.reload()  # the token stays for the session, as after a sign-in by hand
    page.get_by_text("Signed in as alice (user)").wait_for()
