"""The dashboard in headless Chromium: the label editor (add, change, remove; the WMS's RFC 7807 validation errors
shown in the editor), and the retry button offered only where the WMS would retry (a failed taskforce not retried
yet, of an active workflow)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from factories import workflow_request
from test_ui_browser import LIVE_TIMEOUT_MS, call, sign_in, wait_for_phase

from wms.auth import Role


def test_label_editor(browser, wms_process, make_token, screenshot: Callable[..., Path]) -> None:  # type: ignore[no-untyped-def]
    url, alice = wms_process, make_token(Role.USER, "alice")
    labels = {"experiment": "ui-test", "keep": "yes"}
    wid = call(url, alice, "POST", "/v0/workflows", workflow_request(labels=labels))["workflow"]["workflow_id"]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    sign_in(page, url, alice)
    row = page.locator("tr.wf", has=page.get_by_role("button", name=wid))
    row.get_by_role("button", name=wid).click()
    page.get_by_role("button", name="Edit labels…").click()
    editor = page.get_by_role("dialog", name=f"Labels of {wid}")
    assert editor.get_by_label("Key of label 1").input_value() == "experiment"
    assert editor.get_by_label("Value of label 2").input_value() == "yes"

    # change one, remove one, add one; someone else's edit of another label meanwhile is kept
    call(url, alice, "PATCH", f"/v0/workflows/{wid}", {"labels": {"other": "x"}})
    editor.get_by_label("Value of label 1").fill("ui-test-2")
    editor.get_by_role("button", name="Remove label 2").click()
    editor.get_by_role("button", name="Add a label").click()
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Key of label 2"
    editor.get_by_label("Key of label 2").fill("campaign")
    editor.get_by_label("Value of label 2").fill("spring 2026")
    screenshot(page, "label-editor")
    editor.get_by_role("button", name="Save labels").click()
    page.locator("#notice", has_text=f"Labels of {wid} saved.").wait_for()
    assert not editor.is_visible()
    saved = {"experiment": "ui-test-2", "other": "x", "campaign": "spring 2026"}
    assert call(url, alice, "GET", f"/v0/workflows/{wid}")["labels"] == saved
    row.get_by_text("campaign=spring 2026").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert row.get_by_text("keep=yes").count() == 0

    # a key the WMS refuses: its problem is shown in the editor, which stays open with the input kept
    page.get_by_role("button", name="Edit labels…").click()
    editor.get_by_role("button", name="Add a label").click()
    editor.get_by_label("Key of label 4").fill("bad key!")
    editor.get_by_label("Value of label 4").fill("v")
    editor.get_by_role("button", name="Save labels").click()
    problem = editor.get_by_role("alert")
    problem.get_by_text("Not saved: Bad Request (400)").wait_for()
    assert "bad key!" in problem.inner_text()
    assert editor.is_visible() and editor.get_by_label("Key of label 4").input_value() == "bad key!"
    # a key given twice is caught before sending
    editor.get_by_label("Key of label 4").fill("campaign")
    editor.get_by_role("button", name="Save labels").click()
    problem.get_by_text('The key "campaign" is given twice.').wait_for()
    editor.get_by_role("button", name="Cancel").click()
    assert call(url, alice, "GET", f"/v0/workflows/{wid}")["labels"] == saved
    assert [e for e in console_errors if not e.startswith("Failed to load resource")] == [], console_errors
    page.close()


def test_retry_offered_only_when_allowed(browser, wms_process, make_token) -> None:  # type: ignore[no-untyped-def]
    url = wms_process
    alice, tms = make_token(Role.USER, "alice"), make_token(Role.TMS, "tms")
    created = call(url, alice, "POST", "/v0/workflows", workflow_request())
    wid, uuid = created["workflow"]["workflow_id"], created["taskforces"][0]["taskforce_uuid"]

    def submit(tf_uuid: str, cluster_id: int) -> None:
        wait_for_phase(url, alice, tf_uuid, "pending-starter")
        work = call(url, tms, "GET", "/v0/tms/pending-starter/taskforces?schedd=schedd-alpha.test")
        assert work["taskforce"]["taskforce_uuid"] == tf_uuid
        body = {"cluster_id": cluster_id, "n_workers": 2, "submit_dict": {}, "job_event_log_fpath": "/l.jel"}
        call(url, tms, "POST", f"/v0/tms/condor-submit/taskforces/{tf_uuid}", body)

    submit(uuid, 51)
    call(
        url,
        tms,
        "POST",
        "/v0/tms/statuses/taskforces",
        {"compound_statuses_by_taskforce": {uuid: {"RUNNING": {"Tasking": 2}}}},
    )
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, url, alice)
    page.get_by_role("button", name=wid).click()
    card = page.locator("article.tf", has=page.locator("h4", has_text=uuid))
    card.locator(".seg-running").wait_for(timeout=LIVE_TIMEOUT_MS)

    # running without errors: no retry (the WMS would refuse it)
    assert card.get_by_role("button", name="Job logs…").is_visible()
    assert card.get_by_role("button", name="Retry…").count() == 0
    call(url, alice, "POST", f"/v0/taskforces/{uuid}/actions/retry", status=409)

    # tasks report errors (its health stays ok: no worker failed): the WMS would retry it, so the page offers it
    errors = {"top_task_errors_by_taskforce": {uuid: {"task failed (exit code 2)": 1}}}
    call(url, tms, "POST", "/v0/tms/statuses/taskforces", errors)
    card.get_by_role("button", name="Retry…").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert card.locator(".health").inner_text() == "ok"
    card.get_by_role("button", name="Retry…").click()
    page.get_by_role("dialog").get_by_role("button", name="Retry taskforce").click()
    page.locator("#notice", has_text=f"Taskforce {uuid} retried as").wait_for()
    new = page.locator("#notice").inner_text().rsplit(" ", 1)[-1].rstrip(".")

    # retried: it says by which, and offers no second retry; the fresh one has not failed
    card.locator("p.retried", has_text=f"Retried as {new}").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert card.get_by_role("button", name="Retry…").count() == 0
    fresh = page.locator("article.tf", has=page.locator("h4", has_text=new))
    fresh.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert fresh.get_by_role("button", name="Retry…").count() == 0

    # the fresh one's jobs are held: retry offered, until the workflow is deactivated
    submit(new, 52)
    held = {"compound_statuses_by_taskforce": {new: {"HELD: disk quota": {"null": 2}}}}
    call(url, tms, "POST", "/v0/tms/statuses/taskforces", held)
    fresh.get_by_role("button", name="Retry…").wait_for(timeout=LIVE_TIMEOUT_MS)
    call(url, alice, "POST", f"/v0/workflows/{wid}/actions/abort")
    fresh.get_by_role("button", name="Retry…").wait_for(state="detached", timeout=LIVE_TIMEOUT_MS)
    assert page.locator("tr.wf").get_by_text("aborted").is_visible()
    assert page.get_by_role("button", name="Retry…").count() == 0
    page.close()
