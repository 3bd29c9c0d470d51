"""The dashboard in headless Chromium against a real WMS process: sign-in, live updates from TMS reports,
actions through their confirmation dialogs, readable errors, and screenshots at desktop and phone sizes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from factories import workflow_request

from wms.auth import Role

LIVE_TIMEOUT_MS = 15_000  # the page polls every 2 s
SET_HIDDEN = """hidden => {
    Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
    document.dispatchEvent(new Event("visibilitychange"));
}"""


def call(url: str, token: str, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    """One REST call that must answer ``status``; its JSON body."""
    response = httpx.request(method, url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


def wait_for_phase(url: str, token: str, uuid: str, phase: str, within: float = 20.0) -> None:
    """Poll the API until the taskforce is in ``phase``."""
    deadline = time.monotonic() + within
    while call(url, token, "GET", f"/v0/taskforces/{uuid}")["phase"] != phase:
        assert time.monotonic() < deadline, f"{uuid} never reached {phase}"
        time.sleep(0.1)


def sign_in(page: Any, url: str, token: str) -> None:
    """Open the dashboard and sign in with ``token``."""
    page.goto(f"{url}/ui")
    page.get_by_label("Bearer token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_dashboard_end_to_end(browser, wms_process, make_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = wms_process
    alice, tms = make_token(Role.USER, "alice"), make_token(Role.TMS, "tms-alpha")
    created = call(url, alice, "POST", "/v0/workflows", workflow_request(labels={"experiment": "ui-test"}))
    wid = created["workflow"]["workflow_id"]
    uuid = created["taskforces"][0]["taskforce_uuid"]

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    sign_in(page, url, alice)
    page.get_by_text("Signed in as alice (user)").wait_for()
    row = page.locator("tr.wf", has=page.get_by_role("button", name=wid))
    row.get_by_text("active").wait_for()
    assert row.get_by_text("experiment=ui-test").is_visible()
    page.evaluate("window.sameDocument = true")  # gone if the page reloads or navigates

    # details: the task directive and its taskforce; the phase moves on by itself (queues get activated)
    row.get_by_role("button", name=wid).click()
    assert row.get_by_role("button", name=wid).get_attribute("aria-expanded") == "true"
    card = page.locator("article.tf", has=page.locator("h4", has_text=uuid))
    card.locator(".phase", has_text="pending-starter").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert page.get_by_text(created["task_directives"][0]["task_id"]).is_visible()

    # the TMS submits the jobs and reports statuses: the page follows without a reload
    wait_for_phase(url, alice, uuid, "pending-starter")
    work = call(url, tms, "GET", "/v0/tms/pending-starter/taskforces?schedd=schedd-alpha.test")
    assert work["taskforce"]["taskforce_uuid"] == uuid
    submit = {"cluster_id": 4242, "n_workers": 3, "submit_dict": {}, "job_event_log_fpath": "/l.jel"}
    call(url, tms, "POST", f"/v0/tms/condor-submit/taskforces/{uuid}", submit)
    card.locator(".phase", has_text="condor-submit").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert card.get_by_text("4242", exact=True).is_visible()
    report = {
        "compound_statuses_by_taskforce": {
            uuid: {"RUNNING": {"Tasking": 2}, "HELD: memory 1.5 GB": {"null": 1}, "COMPLETED": {"Done": 1}}
        },
        "top_task_errors_by_taskforce": {uuid: {"task failed (exit code 1): boom": 4}},
    }
    call(url, tms, "POST", "/v0/tms/statuses/taskforces", report)
    card.locator(".seg-running", has_text="2").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert card.locator(".seg-held").inner_text() == "1" and card.locator(".seg-done").inner_text() == "1"
    assert "memory 1.5 GB" in card.locator(".key-held").inner_text()
    assert card.get_by_text("task failed (exit code 1): boom").is_visible()
    assert card.locator(".bar").get_attribute("aria-label") == "Workers: 2 running, 1 held, 1 done"
    card.get_by_text("Phase changes").click()
    assert card.locator("details.log li").count() == 4  # created, pre-launch, pending-starter, condor-submit
    assert row.get_by_text("1 condor-submit").is_visible()
    assert page.evaluate("window.sameDocument") is True

    # job logs, fetched when asked for, in a viewer dialog
    job = {
        "job_id": "4242.0",
        "stdout_tail": "event 7 processed\n",
        "stderr_tail": "Traceback: boom\n",
        "task_error": "task failed (exit code 1): boom",
        "exit_code": 1,
        "ended_ts": time.time(),
    }
    call(url, tms, "POST", f"/v0/tms/logs/taskforces/{uuid}", {"jobs": [job]})
    card.get_by_role("button", name="Job logs…").click()
    viewer = page.get_by_role("dialog", name=f"Job logs of {uuid}")
    viewer.get_by_text("Job 4242.0").wait_for()
    viewer.get_by_text("Standard output (tail)").click()
    assert viewer.get_by_text("event 7 processed").is_visible()
    viewer.get_by_role("button", name="Close").click()
    assert not viewer.is_visible()
    assert page.evaluate("document.activeElement.textContent") == "Job logs…"  # focus is back on the opener

    # a hidden tab stops polling; showing it again resumes at once
    queries: list[str] = []
    page.on("request", lambda request: queries.append(request.url) if "/v0/query/" in request.url else None)
    page.evaluate(SET_HIDDEN, True)
    page.get_by_text("Paused while this tab is hidden.").wait_for()
    page.wait_for_timeout(500)  # a refresh under way may still finish
    before = len(queries)
    page.wait_for_timeout(2500)
    assert len(queries) == before
    page.evaluate(SET_HIDDEN, False)
    page.get_by_text("Live · updated").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert len(queries) > before

    page.screenshot(path=str(tmp_path / "dashboard-1280x800.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(tmp_path / "dashboard-390x844.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})

    # add workers through its dialog: a second taskforce appears
    page.get_by_role("button", name="Add workers…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Cluster location").fill("test-beta")
    dialog.get_by_label("Number of workers").fill("2")
    dialog.get_by_role("button", name="Add workers").click()
    page.locator("#notice", has_text="created at test-beta with 2 worker(s)").wait_for()
    page.locator("article.tf").nth(1).wait_for(timeout=LIVE_TIMEOUT_MS)

    # retry the taskforce with held jobs: the new one appears, the old one is sent to stop
    card.get_by_role("button", name="Retry…").click()
    page.get_by_role("dialog").get_by_role("button", name="Retry taskforce").click()
    page.locator("#notice", has_text=f"Taskforce {uuid} retried as").wait_for()
    card.locator(".phase", has_text="pending-stopper").wait_for(timeout=LIVE_TIMEOUT_MS)
    page.locator("article.tf").nth(2).wait_for(timeout=LIVE_TIMEOUT_MS)

    # abort: cancelling the dialog changes nothing; confirming aborts
    page.get_by_role("button", name="Abort…").click()
    assert wid in page.get_by_role("dialog").inner_text()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    assert not page.get_by_role("dialog").is_visible()
    assert call(url, alice, "GET", f"/v0/workflows/{wid}")["deactivated"] is None
    page.get_by_role("button", name="Abort…").click()
    page.get_by_role("dialog").get_by_role("button", name="Abort workflow").click()
    row.get_by_text("aborted").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert call(url, alice, "GET", f"/v0/workflows/{wid}")["deactivated"] == "ABORTED"
    assert page.get_by_role("button", name="Abort…").count() == 0
    assert page.evaluate("window.sameDocument") is True
    assert console_errors == []

    # sign-out forgets the token
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Bearer token").wait_for()
    assert page.evaluate("sessionStorage.length") == 0
    page.close()


def test_errors_are_readable(browser, wms_process, make_token) -> None:  # type: ignore[no-untyped-def]
    url = wms_process
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, url, "not-a-token")
    error = page.get_by_role("alert")
    error.get_by_text("Sign-in failed: Unauthorized (401)").wait_for()
    lines = [line for line in error.inner_text().splitlines() if line]
    assert lines == ["Sign-in failed: Unauthorized (401)", "invalid token: Not enough segments", "Dismiss"], lines
    assert page.get_by_label("Bearer token").is_visible()

    # a problem from an action: finishing a workflow an admin aborted meanwhile is a conflict (409)
    alice = make_token(Role.USER, "alice")
    wid = call(url, alice, "POST", "/v0/workflows", workflow_request())["workflow"]["workflow_id"]
    sign_in(page, url, alice)
    page.get_by_role("button", name=wid).click()
    page.get_by_role("button", name="Finish…").click()
    call(url, make_token(Role.ADMIN, "root"), "POST", f"/v0/workflows/{wid}/actions/abort")
    page.get_by_role("dialog").get_by_role("button", name="Finish workflow").click()
    error.get_by_text(f"Could not finish {wid}: Conflict (409)").wait_for()
    assert f"workflow {wid} is already deactivated as ABORTED" in error.inner_text()
    page.close()
