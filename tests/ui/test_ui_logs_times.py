"""The dashboard in headless Chromium: relative times ("5 min ago", the absolute time in the title), a taskforce's run
time (from its condor-submit to now, or to its end), the log viewer following running jobs (a reader at the bottom
stays there), and screenshots of the main views for a reviewer."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from factories import workflow_request
from test_ui_browser import LIVE_TIMEOUT_MS, call, sign_in, wait_for_phase

from wms.auth import Role

ABSOLUTE = """ts => new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" })
    .format(new Date(ts * 1000))"""
AT_BOTTOM = "e => e.scrollHeight > e.clientHeight && e.scrollTop + e.clientHeight >= e.scrollHeight - 4"


def job_log(lines: int, ended: bool = False) -> dict:
    """A job log whose standard output has ``lines`` lines (running unless ``ended``)."""
    stdout = "".join(f"processed event {i}\n" for i in range(1, lines + 1))
    return {
        "job_id": "61.0",
        "stdout_tail": stdout,
        "stderr_tail": "",
        "task_error": "",
        "exit_code": 0 if ended else None,
        "ended_ts": time.time() if ended else None,
    }


def test_times_live_logs_and_screenshots(  # type: ignore[no-untyped-def]
    browser, wms_process, make_token, screenshot: Callable[..., Path]
) -> None:
    url = wms_process
    alice, tms = make_token(Role.USER, "alice"), make_token(Role.TMS, "tms")
    created = call(url, alice, "POST", "/v0/workflows", workflow_request())
    wid, uuid = created["workflow"]["workflow_id"], created["taskforces"][0]["taskforce_uuid"]
    wait_for_phase(url, alice, uuid, "pending-starter")
    call(url, tms, "GET", "/v0/tms/pending-starter/taskforces?schedd=schedd-alpha.test")
    submit = {"cluster_id": 61, "n_workers": 1, "submit_dict": {}, "job_event_log_fpath": "/l.jel"}
    call(url, tms, "POST", f"/v0/tms/condor-submit/taskforces/{uuid}", submit)

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.clock.install()  # the page's clock runs as usual, until the test moves it on
    sign_in(page, url, alice)
    row = page.locator("tr.wf", has=page.get_by_role("button", name=wid))
    created_at = row.locator("td[data-label=Created] time")
    created_at.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert re.fullmatch(r"just now|\d+ s ago", created_at.inner_text()), created_at.inner_text()
    assert created_at.get_attribute("title") == page.evaluate(ABSOLUTE, created["workflow"]["timestamp"])
    list_png = screenshot(page, "list")

    row.get_by_role("button", name=wid).click()
    card = page.locator("article.tf", has=page.locator("h4", has_text=uuid))
    run_time = card.locator(".run-time")
    run_time.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert re.fullmatch(r"\d+ s \(running\)", run_time.inner_text()), run_time.inner_text()
    assert (run_time.get_attribute("title") or "").startswith("since ")

    # five minutes on: the times follow without a refresh of the data
    page.clock.fast_forward("05:00")
    created_at.filter(has_text="5 min ago").wait_for(timeout=LIVE_TIMEOUT_MS)
    run_time.filter(has_text=re.compile(r"^5 min \d+ s \(running\)$")).wait_for(timeout=LIVE_TIMEOUT_MS)
    expanded_png = screenshot(page, "expanded-workflow")

    # a running job's output: the viewer follows it, a reader at the bottom stays at the bottom
    call(url, tms, "POST", f"/v0/tms/logs/taskforces/{uuid}", {"jobs": [job_log(60)]})
    card.get_by_role("button", name="Job logs…").click()
    viewer = page.get_by_role("dialog", name=f"Job logs of {uuid}")
    viewer.get_by_text("Following 1 running job(s)").wait_for()
    output = viewer.locator("pre")
    assert output.evaluate(AT_BOTTOM)  # a tail opens at its end
    call(url, tms, "POST", f"/v0/tms/logs/taskforces/{uuid}", {"jobs": [job_log(90)]})
    viewer.get_by_text("processed event 90").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert output.evaluate(AT_BOTTOM)
    logs_png = screenshot(page, "logs-modal")

    # a reader who scrolled up keeps the place
    output.evaluate("e => { e.scrollTop = 0; }")
    call(url, tms, "POST", f"/v0/tms/logs/taskforces/{uuid}", {"jobs": [job_log(120)]})
    viewer.get_by_text("processed event 120").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert output.evaluate("e => e.scrollTop") == 0

    # the job ended: the viewer says so and stops re-reading
    log_reads: list[str] = []
    page.on("request", lambda request: log_reads.append(request.url) if request.url.endswith("/logs") else None)
    call(url, tms, "POST", f"/v0/tms/logs/taskforces/{uuid}", {"jobs": [job_log(121, ended=True)]})
    viewer.get_by_text("All jobs ended.").wait_for(timeout=LIVE_TIMEOUT_MS)
    reads = len(log_reads)
    page.wait_for_timeout(4000)  # longer than the viewer's interval
    assert len(log_reads) == reads
    viewer.get_by_role("button", name="Close").click()

    # the jobs completed: the run time stops at their end (server times), however late the page looks
    call(url, tms, "POST", f"/v0/tms/condor-complete/taskforces/{uuid}", {"condor_complete_ts": time.time()})
    ended = run_time.filter(has_text=re.compile(r"^\d+ s \(ended\)$"))
    ended.wait_for(timeout=LIVE_TIMEOUT_MS)
    ran = ended.inner_text()
    page.clock.fast_forward("10:00")
    created_at.filter(has_text="15 min ago").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert run_time.inner_text() == ran
    for png in (list_png, expanded_png, logs_png):
        assert png.is_file() and png.parent.name == "screenshots", png
    page.close()
