"""The dashboard's progress bars (per task and per taskforce: done, failed, in flight, waiting, rate) and its red
failing and failed states, in headless Chromium against a real WMS process fed by TMS reports."""

from __future__ import annotations

from pathlib import Path

from factories import workflow_request
from test_ui_browser import LIVE_TIMEOUT_MS, call, sign_in, wait_for_phase

from wms.auth import Role

RED = "rgb(185, 28, 28)"  # --danger (light scheme)


def test_progress_bars_and_red_failed_state(browser, wms_process, make_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = wms_process
    alice, tms = make_token(Role.USER, "alice"), make_token(Role.TMS, "tms")
    created = call(url, alice, "POST", "/v0/workflows", workflow_request(("test-alpha", "test-beta")))
    wid, task_id = created["workflow"]["workflow_id"], created["task_directives"][0]["task_id"]
    uuids = {}
    for n, (location, schedd) in enumerate((("test-alpha", "schedd-alpha.test"), ("test-beta", "schedd-beta.test"))):
        uuid = next(tf["taskforce_uuid"] for tf in created["taskforces"] if tf["cluster_location"] == location)
        wait_for_phase(url, alice, uuid, "pending-starter")
        work = call(url, tms, "GET", f"/v0/tms/pending-starter/taskforces?schedd={schedd}")
        submit = {"cluster_id": 70 + n, "n_workers": 2, "submit_dict": {}, "job_event_log_fpath": "/l.jel"}
        call(url, tms, "POST", f"/v0/tms/condor-submit/taskforces/{work['taskforce']['taskforce_uuid']}", submit)
        uuids[location] = uuid
    alpha, beta = uuids["test-alpha"], uuids["test-beta"]
    zero = {"done": 0, "failed": 0, "in_flight": 0}
    running = {"RUNNING": {"Tasking": 2}}
    call(url, tms, "POST", "/v0/tms/statuses/taskforces", {
        "compound_statuses_by_taskforce": {alpha: running, beta: running},
        "event_counters_by_taskforce": {alpha: zero, beta: zero},
    })  # fmt: skip
    counters = {alpha: {"done": 30, "failed": 10, "in_flight": 2}, beta: {"done": 5, "failed": 0, "in_flight": 1}}
    call(url, tms, "POST", "/v0/tms/statuses/taskforces", {"event_counters_by_taskforce": counters})

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    sign_in(page, url, alice)
    row = page.locator("tr.wf", has=page.get_by_role("button", name=wid))
    row.get_by_role("button", name=wid).click()

    # the task's bar sums its taskforces; each taskforce has its own bar
    task = page.locator("section.task", has=page.locator("h3", has_text=task_id))
    task_bar = task.locator(".progress-block .pbar").first
    task_bar.locator(".seg-ev-done", has_text="35").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert task_bar.locator(".seg-ev-failed").inner_text() == "10"
    assert task_bar.locator(".seg-ev-in_flight").inner_text() == "3"
    label = task_bar.get_attribute("aria-label") or ""
    assert label.startswith(f"Events of task {task_id}: 35 done, 10 failed, 3 in flight, ")
    assert "events/s" in task.locator(".progress-legend").first.inner_text()
    card = page.locator("article.tf", has=page.locator("h4", has_text=alpha))
    expected = f"Events of taskforce {alpha}: 30 done, 10 failed, 2 in flight"
    assert card.locator(".pbar").get_attribute("aria-label") == expected
    assert card.locator(".seg-ev-failed").evaluate("e => getComputedStyle(e).backgroundColor") == RED
    assert card.locator(".health").inner_text() == "ok"
    assert page.locator(".health-alert").count() == 0
    page.screenshot(path=str(tmp_path / "progress-ok.png"), full_page=True)

    # every worker of both taskforces ended in a fatal error: failed, in red, with the reason
    fatal = "pilot failed: cannot start the task image"
    ended = {"COMPLETED": {"FatalError": 2}}
    call(url, tms, "POST", "/v0/tms/statuses/taskforces", {
        "compound_statuses_by_taskforce": {alpha: ended, beta: ended},
        "top_task_errors_by_taskforce": {alpha: {fatal: 2}, beta: {fatal: 2}},
    })  # fmt: skip
    alert = page.locator("p.health-alert")
    alert.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert alert.inner_text().startswith("Workflow failed: all 2 taskforces failed: all 2 workers ended in fatal")
    assert fatal in alert.inner_text()
    assert alert.evaluate("e => getComputedStyle(e).color") == RED
    badge = row.locator(".health")
    assert badge.inner_text() == "failed" and badge.evaluate("e => getComputedStyle(e).backgroundColor") == RED
    assert card.locator(".health").inner_text() == "failed" and fatal in card.locator("p.health-reason").inner_text()
    assert card.evaluate("e => getComputedStyle(e).borderColor") == RED
    done_colour = card.locator(".seg-ev-done").evaluate("e => getComputedStyle(e).backgroundColor")
    assert done_colour != RED  # success keeps its own colour
    workers = card.locator(".bar")  # the workers' statuses: a fatal error is red, not "done"
    assert workers.get_attribute("aria-label") == "Workers: 2 fatal error"
    assert workers.locator(".seg-fatal").evaluate("e => getComputedStyle(e).backgroundColor") == RED
    page.screenshot(path=str(tmp_path / "progress-failed.png"), full_page=True)
    assert not console_errors, console_errors
