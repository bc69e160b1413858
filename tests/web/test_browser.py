"""The web UI in a real browser: a patient and a doctor use IRMI end to end.

Patient signs up, uploads a real chest X-ray and a real two-view mammogram exam, watches the
progress bar (driven by the study's SSE stream) reach 100%, sees the heatmaps, shares a study
with a doctor (verified by an admin on the admin screen first); the doctor replies from the
inbox; the patient reads the reply and rates, withdraws the doctor's access, deletes the study
(the consultation stays and says so).
Error paths: a wrong file type, a photograph instead of an X-ray, an upload that is too large
and an inference service that is down. A screenshot of every screen is saved at desktop and
phone size under tests/artifacts/screenshots/.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import create_admin_cli
from tests.web.conftest import (
    Pages,
    Stack,
    gateway_env,
    own_gateway_pages,
    photograph,
    real_chest_xray,
    real_mammo_exam,
    screenshot,
)

pytestmark = pytest.mark.browser

PASSWORD = "correct-horse-42"
# A doctor reads a chest result's category (gateway/web/js/wording.js CATEGORY), no verdict.
DOCTOR_HEADLINES = {
    "Review recommended",
    "No finding flagged",
    "Outside the validated population: review recommended",
}

# Records every value the analysis progress bar takes: its aria-valuetext ("48%") changes with
# it; observers run later, so each record's OLD value is kept, and the current one at the end.
RECORD_PROGRESS = """
window.__progress = [];
new MutationObserver((records) => {
  for (const r of records) {
    if (r.target.matches('[data-testid=analysis-progress]') && r.oldValue !== null) {
      window.__progress.push(r.oldValue);
    }
  }
}).observe(document, {
  subtree: true, attributes: true, attributeOldValue: true, attributeFilter: ['aria-valuetext'],
});
"""


def signup(page: Any, *, name: str, email: str, doctor: bool = False) -> None:
    page.goto("/#/signup")
    page.get_by_role("heading", name="Create your IRMI account").wait_for()
    if doctor:
        page.get_by_label("Doctor").check()
        page.get_by_label("Specialty").select_option("radiology")
        page.get_by_label("Licence number").fill("GMC-7654321")
    page.get_by_label("Full name").fill(name)
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)


def new_patient(page: Any, *, name: str, email: str) -> None:
    """Sign a patient up through the form; they land on the upload screen."""
    signup(page, name=name, email=email)
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("heading", name="New study").wait_for()


def mammogram_views(page: Any, views: list[tuple[Path, str]]) -> None:
    """Choose Mammogram on the upload screen and fill one row per (image, view tag)."""
    page.get_by_label("Mammogram").check()
    for i, (image, tag) in enumerate(views, start=1):
        if i > 1:
            page.get_by_role("button", name="Add another view").click()
        page.get_by_label(f"View {i} image").set_input_files(str(image))
        page.get_by_label(f"View {i} tag").select_option(tag)


def login(page: Any, email: str) -> None:
    page.goto("/#/login")
    page.get_by_role("heading", name="Log in to IRMI").wait_for()
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")  # keyboard submit


def nav(page: Any, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()


def overlay_loaded(page: Any, scope: str = "body") -> bool:
    return bool(
        page.evaluate(
            """(scope) => [...document.querySelectorAll(scope + ' img.overlay')].some(
                 (i) => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0)""",
            scope,
        )
    )


def test_patient_and_doctor_flow(stack: Stack, pages: Pages, tmp_path: Path) -> None:
    chest = real_chest_xray()
    exam = real_mammo_exam()
    if chest is None or not exam:
        pytest.skip("real images absent: ../shared/data/nih-cxr14 and mini-mias are needed")

    # --- a doctor registers (so the patient can choose them)
    doc = pages.new()
    signup(doc, name="Dr Grace Hopper", email="grace@clinic.example", doctor=True)
    screenshot(doc, "02-signup-doctor")
    doc.get_by_role("button", name="Create account").click()
    doc.get_by_role("heading", name="Inbox").wait_for()
    doc.get_by_text("No questions from patients yet.").wait_for()
    doc.get_by_test_id("doctor-status").wait_for()  # pending until an admin verifies
    screenshot(doc, "10-doctor-inbox-empty")
    doc.get_by_role("button", name="Log out").click()
    doc.get_by_role("heading", name="Log in to IRMI").wait_for()

    # --- an admin (made by the CLI) verifies the doctor on the admin screen
    create_admin_cli(stack.database_url, "admin@irmi.example", PASSWORD)
    adm = pages.new()
    login(adm, "admin@irmi.example")
    adm.get_by_role("heading", name="Doctors to verify").wait_for()
    adm.get_by_role("heading", name="Dr Grace Hopper").wait_for()
    screenshot(adm, "03-admin-pending")
    adm.get_by_role("button", name="Verify Dr Grace Hopper").click()
    adm.get_by_text("Nobody here.").wait_for()
    adm.get_by_label("Show").select_option("verified")
    adm.get_by_role("heading", name="Dr Grace Hopper").wait_for()
    adm.get_by_text("History of decisions").click()
    adm.get_by_text(re.compile("verified by Administrator")).first.wait_for()
    screenshot(adm, "04-admin-verified")

    # --- the patient signs up
    pat = pages.new()
    pat.add_init_script(RECORD_PROGRESS)
    pat.goto("/")
    pat.get_by_role("heading", name="Log in to IRMI").wait_for()
    screenshot(pat, "01-login")
    pat.get_by_role("link", name="Create an account").click()
    signup(pat, name="Ada Lovelace", email="ada@example.org")
    screenshot(pat, "02-signup-patient")
    pat.get_by_role("button", name="Create account").click()
    pat.get_by_role("heading", name="New study").wait_for()
    screenshot(pat, "03-upload-chest")

    # --- chest X-ray: result, heatmap overlay with toggle and opacity
    pat.get_by_label("Chest X-ray image").set_input_files(str(chest))
    pat.get_by_role("button", name="Upload and analyse").click()
    pat.wait_for_url(re.compile(r"#/studies/\w+$"), timeout=120_000)
    chest_url = pat.url
    label = pat.get_by_test_id("result-label")
    label.wait_for(timeout=60_000)
    # Patients read the screening wording, never a diagnosis (tests/web/test_result_wording.py).
    assert label.inner_text().strip() in {"Review recommended", "No finding flagged"}
    pat.wait_for_function(
        "() => [...document.querySelectorAll('img.overlay')].some(i => i.naturalWidth > 0)"
    )
    assert overlay_loaded(pat)
    assert pat.locator("img.base").evaluate("i => i.naturalWidth") > 0
    body = pat.locator("main").inner_text()
    assert "Screening aid, not a diagnosis" in body
    assert re.search(r"Models?: .*chest-abnormality version \S+", body), body
    assert not re.search(r"\d+(\.\d+)? / 100|\d%", body), body  # no score, no probability
    assert "Normal" not in body and "Abnormal" not in body  # no diagnosis-named probabilities
    # Where the screening aid looked: off until the patient asks for it.
    looked = pat.get_by_label("Show where the screening aid looked")
    assert pat.locator("img.overlay").is_hidden()
    looked.check()
    assert pat.locator("img.overlay").is_visible()
    opacity = pat.get_by_label("Heatmap opacity")
    opacity.fill("80")
    assert pat.locator("img.overlay").evaluate("i => i.style.opacity") == "0.8"
    screenshot(pat, "04-chest-result")
    looked.uncheck()
    assert pat.locator("img.overlay").is_hidden()

    # --- mammogram exam: two tagged views, progress from the SSE stream up to 100%
    nav(pat, "New study")
    pat.get_by_role("heading", name="New study").wait_for()
    mammogram_views(pat, exam[:2])
    t0, t1 = exam[0][1], exam[1][1]
    screenshot(pat, "05-upload-mammogram")
    pat.get_by_role("button", name="Upload and analyse").click()
    pat.wait_for_url(re.compile(r"#/studies/\w+$"), timeout=60_000)
    mammo_url = pat.url
    bar = pat.get_by_test_id("analysis-progress")
    bar.wait_for()
    shot_taken = False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        value = float(bar.evaluate("b => b.value"))
        if 0 < value < 100 and not shot_taken:
            screenshot(pat, "06-mammogram-progress")
            shot_taken = True
        if pat.get_by_test_id("result-label").count() and value >= 100:
            break
        pat.wait_for_timeout(100)
    # Every value the bar took (recorded in the page, so a burst of events is not missed).
    seen = [float(v.rstrip("%")) for v in pat.evaluate("window.__progress")]
    seen.append(float(bar.evaluate("b => b.value")))
    assert seen and seen[-1] == 100, seen
    assert seen == sorted(seen), f"progress went backwards: {seen}"
    assert any(0 < v < 100 for v in seen), f"no intermediate progress: {seen}"
    assert "Analysis complete: 100%" in pat.locator("main").inner_text()
    pat.wait_for_function(
        "() => [...document.querySelectorAll('img.overlay')].filter(i => i.naturalWidth > 0)"
        ".length >= 2"
    )
    text = pat.locator("main").inner_text()
    assert t0 in text and t1 in text
    assert "Screening aid, not a diagnosis" in text
    assert pat.get_by_role("cell", name="Left").count() or "Left" in text
    screenshot(pat, "07-mammogram-result")

    # --- history with thumbnails
    nav(pat, "My studies")
    pat.get_by_role("heading", name="My studies").wait_for()
    pat.wait_for_function(
        "() => [...document.querySelectorAll('img.thumb')].filter(i => i.naturalWidth > 0)"
        ".length >= 2"
    )
    assert pat.locator("li.study-item").count() == 2
    screenshot(pat, "08-history")

    # --- doctors by specialty
    nav(pat, "Doctors")
    pat.get_by_role("heading", name="Doctors").wait_for()
    pat.get_by_text("Dr Grace Hopper").wait_for()
    pat.get_by_label("Specialty").select_option("oncology")
    pat.get_by_text("No doctors in this specialty yet.").wait_for()
    pat.get_by_label("Specialty").select_option("radiology")
    pat.get_by_text("Dr Grace Hopper").wait_for()
    screenshot(pat, "09-doctors")

    # --- share the chest study with the doctor, with a question
    pat.goto(chest_url)
    pat.get_by_role("link", name="Ask a doctor about this study").click()
    pat.get_by_role("heading", name="Ask a doctor").wait_for()
    pat.get_by_label(re.compile("Dr Grace Hopper")).check()
    question = "Is the highlighted area on the right something to worry about?"
    pat.get_by_label("Your question").fill(question)
    screenshot(pat, "11-share")
    pat.get_by_role("button", name="Send question").click()
    pat.get_by_role("heading", name="Your question to Dr Grace Hopper").wait_for()
    pat.get_by_text("Waiting for Dr Grace Hopper to reply.").wait_for()
    screenshot(pat, "12-question-sent")

    # --- the doctor logs in, opens the inbox, reviews the study, replies
    login(doc, "grace@clinic.example")
    doc.get_by_role("heading", name="Inbox").wait_for()
    doc.get_by_text("1 waiting for your reply.").wait_for()
    screenshot(doc, "13-doctor-inbox")
    doc.get_by_role("link", name=re.compile("^Review and reply")).click()
    doc.get_by_role("heading", name="Consultation with Ada Lovelace").wait_for()
    doc.get_by_text(question).wait_for()
    doc.get_by_test_id("result-label").wait_for()
    assert doc.get_by_test_id("result-label").inner_text().strip() in DOCTOR_HEADLINES
    doc.wait_for_function(
        "() => [...document.querySelectorAll('img.overlay')].some(i => i.naturalWidth > 0)"
    )
    assert overlay_loaded(doc)
    screenshot(doc, "14-doctor-study")
    answer = "The shaded area is mild; please book a follow-up X-ray in six weeks."
    doc.get_by_label("Reply to the patient").fill(answer)
    doc.get_by_role("button", name="Send reply").click()
    doc.get_by_test_id("reply").wait_for()
    assert doc.get_by_test_id("reply").inner_text() == answer
    screenshot(doc, "15-doctor-replied")

    # --- the patient, still on the question's page, sees the reply arrive by itself (SSE)
    pat.get_by_test_id("reply").wait_for()
    assert pat.get_by_test_id("reply").inner_text() == answer

    # --- the patient reads the reply and rates the doctor
    nav(pat, "My questions")
    pat.get_by_role("heading", name="My questions").wait_for()
    pat.get_by_text("Answered").first.wait_for()
    screenshot(pat, "16-my-questions")
    pat.get_by_role("link", name=re.compile("^Open .consultation with Dr Grace Hopper")).click()
    pat.get_by_test_id("reply").wait_for()
    assert pat.get_by_test_id("reply").inner_text() == answer
    pat.get_by_label("5 out of 5").check()
    screenshot(pat, "17-read-reply-and-rate")
    pat.get_by_role("button", name="Rate").click()
    pat.get_by_role("img", name=re.compile("Rated 5.0 out of 5")).wait_for()
    nav(pat, "Doctors")
    pat.get_by_role("img", name="Rated 5.0 out of 5 by 1 patient").wait_for()
    screenshot(pat, "18-doctors-rated")

    # --- the patient deletes the mammogram study (after confirming)
    pat.goto(mammo_url)
    pat.get_by_role("heading", name="Mammogram study").wait_for()
    pat.once("dialog", lambda dialog: dialog.accept())
    pat.get_by_role("button", name="Delete study").click()
    pat.get_by_role("heading", name="My studies").wait_for()
    pat.get_by_text("1 study, newest first.").wait_for()
    assert pat.locator("li.study-item").count() == 1

    # --- the patient withdraws the doctor's access to the chest study; the record stays
    nav(pat, "My questions")
    pat.get_by_role("link", name=re.compile("^Open .consultation with Dr Grace Hopper")).click()
    pat.once("dialog", lambda dialog: dialog.accept())
    pat.get_by_role("button", name="Withdraw access").click()
    pat.get_by_test_id("access-notice").wait_for()
    assert "withdrew" in pat.get_by_test_id("access-notice").inner_text()
    screenshot(pat, "19-access-withdrawn")
    doc.reload()
    doc.get_by_test_id("access-notice").wait_for()
    assert doc.get_by_test_id("reply").inner_text() == answer
    assert doc.locator("img.overlay").count() == 0
    # --- and deletes the study: the consultation says so, for both
    pat.goto(chest_url)
    pat.once("dialog", lambda dialog: dialog.accept())
    pat.get_by_role("button", name="Delete study").click()
    pat.get_by_role("heading", name="My studies").wait_for()
    nav(pat, "My questions")
    pat.get_by_text("Study deleted").wait_for()
    doc.reload()
    doc.get_by_text(re.compile("The patient deleted this study")).wait_for()
    screenshot(doc, "20-doctor-study-deleted")


def test_upload_errors(stack: Stack, pages: Pages, tmp_path: Path) -> None:
    page = pages.new()
    new_patient(page, name="Ben Patient", email="ben@example.org")

    # Keyboard: a new screen moves focus to its heading; Tab continues into the form.
    assert page.evaluate("document.activeElement.textContent") == "New study"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.name") == "kind"
    page.keyboard.press("ArrowRight")  # radio group: arrow keys switch to Mammogram
    page.get_by_label("View 1 image").wait_for()
    page.keyboard.press("ArrowLeft")
    page.get_by_label("Chest X-ray image").wait_for()

    # A wrong file type: the gateway's unsupported_format, in words.
    txt = tmp_path / "notes.txt"
    txt.write_text("not an image at all\n")
    page.get_by_label("Chest X-ray image").set_input_files(str(txt))
    page.get_by_role("button", name="Upload and analyse").click()
    alert = page.get_by_role("alert").filter(has_text="Only PNG, JPEG or DICOM files")
    alert.wait_for()
    screenshot(page, "20-error-wrong-type")

    # A photograph instead of an X-ray: the chest gate refuses it.
    if not stack.real_chest:
        pytest.skip("the photograph check needs the trained chest-gate model (not merged yet)")
    page.get_by_label("Chest X-ray image").set_input_files(str(photograph(tmp_path)))
    page.get_by_role("button", name="Upload and analyse").click()
    page.get_by_role("alert").filter(has_text="This is not a valid chest X-ray").wait_for()
    screenshot(page, "21-error-photograph")


def test_too_large_and_service_down(
    stack: Stack, pages: Pages, tmp_path: Path, browser: Any
) -> None:
    """A second gateway whose inference services are down, whose upload limit is tiny and
    whose access tokens expire at once (the UI must keep refreshing them)."""
    from tests.imagegen import gradient, png_bytes
    from tests.procs import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    # Access tokens live 2 s here: every call goes through the UI's refresh-token rotation.
    env = gateway_env(
        tmp_path,
        dead,
        dead,
        IRMI_GATEWAY_MAX_UPLOAD_BYTES="100000",
        IRMI_GATEWAY_ACCESS_TOKEN_TTL_S="2",
    )
    with own_gateway_pages(browser, env) as other:
        page = other.new()
        new_patient(page, name="Cy Patient", email="cy@example.org")

        small = tmp_path / "small.png"
        small.write_bytes(png_bytes(gradient(256, 256)))
        page.get_by_label("Chest X-ray image").set_input_files(str(small))
        page.get_by_role("button", name="Upload and analyse").click()
        page.get_by_role("alert").filter(has_text="service is unavailable").wait_for()
        screenshot(page, "22-error-service-unavailable")

        big = tmp_path / "big.png"
        rng = __import__("numpy").random.default_rng(0)
        big.write_bytes(png_bytes(rng.integers(0, 255, (600, 600), dtype="uint8")))
        assert big.stat().st_size > 100_000
        page.get_by_label("Chest X-ray image").set_input_files(str(big))
        page.get_by_role("button", name="Upload and analyse").click()
        page.get_by_role("alert").filter(has_text="too large: at most 98 KB").wait_for()
        screenshot(page, "23-error-too-large")

        # Still logged in after all those expired tokens: history loads, no login screen.
        page.get_by_role("navigation", name="Main").get_by_role("link", name="My studies").click()
        page.get_by_text("No studies yet.").wait_for()
        assert page.get_by_role("button", name="Log out").is_visible()


def test_sse_parser_in_the_browser(stack: Stack, pages: Pages) -> None:
    """The fetch()-based SSE reader: split chunks, CRLF, comments, multi-line data, ids."""
    page = pages.new()
    page.goto("/")
    events = page.evaluate(
        """async () => {
        const { SseParser } = await import('/web/js/sse.js');
        const out = [];
        const p = new SseParser((e) => out.push(e));
        for (const chunk of [
          'retry: 2000\\n\\n: keep-alive\\n\\nid: 1\\nevent: prog', 'ress\\r\\ndata: {"percent"',
          ': 5}\\r\\n\\r\\nid: 2\\ndata: line one\\ndata: line two\\n\\n',
          'event: result\\ndata:{"ok":true}\\n', '\\n', 'data: a\\r', '\\ndata: b\\r\\n\\r\\n',
        ]) p.push(chunk);
        return out;
      }"""
    )
    assert events == [
        {"event": "progress", "data": '{"percent": 5}', "id": "1"},
        {"event": "message", "data": "line one\nline two", "id": "2"},
        {"event": "result", "data": '{"ok":true}', "id": "2"},
        {"event": "message", "data": "a\nb", "id": "2"},
    ]
