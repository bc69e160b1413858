"""What each reader sees in a real browser: a patient reads "Review recommended" / "No finding
flagged ..." (never "Abnormal", "Normal", "Malignant" or "Benign" headlines, badges or per-view
labels); the doctor the study is shared with reads the model's labels beside the model card's
measured sensitivity, specificity and AUC with their confidence intervals, and the chest
result's category at its operating point (its sensitivity and specificity with their CIs and
where they were measured), the reliability of the answer and the overlay's legend. Also: the upload
screen's hidden buttons stay hidden, and the history page draws its list in one request."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.web.conftest import (
    Pages,
    Stack,
    real_chest_xray,
    real_mammo_exam,
    screenshot,
    verify_pending_doctors,
)
from tests.web.test_browser import (
    DOCTOR_HEADLINES,
    login,
    mammogram_views,
    nav,
    new_patient,
    signup,
)

pytestmark = pytest.mark.browser

PATIENT_HEADLINES = {"Review recommended", "No finding flagged"}
DIAGNOSIS_WORDS = re.compile(r"\b(Abnormal|Normal|Malignant|Benign)\b")
DASH = "\u2013"  # the en dash the UI writes between the bounds of an interval
EXPLANATIONS = {
    "Review recommended": "flagged these images for your doctor",
    "No finding flagged": (
        "No finding flagged by the screening aid — your doctor still reviews the images."
    ),
}


def _no_diagnosis_for_patient(page: Any) -> None:
    text = page.locator("main").inner_text()
    assert not DIAGNOSIS_WORDS.findall(text), (DIAGNOSIS_WORDS.findall(text), text)
    for cls in ("abnormal", "normal", "malignant", "benign"):
        assert page.locator(f".result-label.{cls}, .badge.{cls}").count() == 0, cls


def _patient_headline(page: Any) -> str:
    label = page.get_by_test_id("result-label")
    label.wait_for(timeout=120_000)
    text = label.inner_text().strip()
    assert text in PATIENT_HEADLINES, text
    assert EXPLANATIONS[text] in page.get_by_test_id("result-explanation").inner_text()
    return text


def test_patient_wording_and_doctor_figures(stack: Stack, pages: Pages) -> None:
    chest, exam = real_chest_xray(), real_mammo_exam()
    if chest is None or not exam:
        pytest.skip("real images absent: ../shared/data/nih-cxr14 and mini-mias are needed")
    doc = pages.new()
    signup(doc, name="Dr Maria Curie", email="maria@clinic.example", doctor=True)
    doc.get_by_role("button", name="Create account").click()
    doc.get_by_role("heading", name="Inbox").wait_for()
    doc.get_by_role("button", name="Log out").click()
    verify_pending_doctors(stack)

    pat = pages.new()
    new_patient(pat, name="Rosalind Patient", email="rosalind@example.org")

    # Chest: the screening wording, no probabilities named after a diagnosis.
    pat.get_by_label("Chest X-ray image").set_input_files(str(chest))
    pat.get_by_role("button", name="Upload and analyse").click()
    pat.wait_for_url(re.compile(r"#/studies/\w+$"), timeout=120_000)
    chest_url = pat.url
    _patient_headline(pat)
    assert "Screening aid, not a diagnosis" in pat.locator("main").inner_text()
    assert not re.search(r"\d%|/ 100", pat.locator("main").inner_text())  # never a probability
    assert pat.get_by_test_id("model-figures").count() == 0
    _no_diagnosis_for_patient(pat)
    screenshot(pat, "30-patient-chest-wording")

    # Mammogram: same wording, no per-view or per-breast benign/malignant labels.
    nav(pat, "New study")
    mammogram_views(pat, exam[:2])
    t0 = exam[0][1]
    pat.get_by_role("button", name="Upload and analyse").click()
    pat.wait_for_url(re.compile(r"#/studies/\w+$"), timeout=60_000)
    _patient_headline(pat)
    pat.get_by_role("heading", name=t0).wait_for()
    assert pat.get_by_role("columnheader", name="Screening aid").count() == 1
    _no_diagnosis_for_patient(pat)
    screenshot(pat, "31-patient-mammogram-wording")

    # History: the same wording in the list's badges.
    nav(pat, "My studies")
    pat.get_by_role("heading", name="My studies").wait_for()
    pat.locator("li.study-item").nth(1).wait_for()
    _no_diagnosis_for_patient(pat)
    badges = {b.strip() for b in pat.locator("li.study-item .badge").all_inner_texts()}
    assert badges & PATIENT_HEADLINES, badges

    # Share the chest study; the doctor reads the category and its measured figures.
    pat.goto(chest_url)
    pat.get_by_role("link", name="Ask a doctor about this study").click()
    pat.get_by_label(re.compile("Dr Maria Curie")).check()
    pat.get_by_label("Your question").fill("What does the flag mean?")
    _no_diagnosis_for_patient(pat)
    pat.get_by_role("button", name="Send question").click()
    pat.get_by_role("heading", name="Your question to Dr Maria Curie").wait_for()

    login(doc, "maria@clinic.example")
    doc.get_by_role("link", name=re.compile("^Review and reply")).click()
    doc.get_by_role("heading", name="Consultation with Rosalind Patient").wait_for()
    label = doc.get_by_test_id("result-label")
    label.wait_for()
    assert label.inner_text().strip() in DOCTOR_HEADLINES
    # The operating point the category was read at, with its measured rates and their CIs.
    point = doc.get_by_test_id("operating-point").inner_text()
    card = httpx.get(f"{stack.tb.url}/v2/models/chest-abnormality", timeout=30).json()
    at = re.escape(f"{card['operating_point']['score_threshold']:.1f}")
    assert re.search(rf"Score ≥ {at} / 100 recommends review: the model card's point", point)
    rate = rf"[\d.]+% \(95% CI [\d.]+%{DASH}[\d.]+%, n = \d+"
    assert re.search(rf"Sensitivity: {rate} abnormal films\)", point), point
    assert re.search(rf"Specificity: {rate} normal films\)", point), point
    assert "Measured on: in-distribution test split" in point, point
    assert re.search(
        rf"[\d.]+ / 100 \(operating threshold {at}\)", doc.locator("main").inner_text()
    )
    assert doc.get_by_test_id("reliability").count() == 1
    legend = doc.get_by_test_id("overlay-legend").inner_text()
    assert "Where the model looked, not a lesion outline" in legend, legend
    figures = doc.get_by_test_id("model-figures")
    ci = rf"\(95% CI [\d.]+%{DASH}[\d.]+%\)"
    figures.get_by_text(re.compile(rf"^Sensitivity: [\d.]+% {ci}")).first.wait_for()
    text = figures.inner_text()
    assert re.search(r"chest-abnormality version \S+", text), text
    assert re.search(rf"Specificity: [\d.]+% {ci}, test split", text), text
    assert re.search(rf"AUC: 0\.\d{{3}} \(95% CI 0\.\d{{3}}{DASH}(0\.\d{{3}}|1\.000)\)", text), text
    screenshot(doc, "32-doctor-sees-labels-and-figures")


def test_hidden_buttons_stay_hidden_on_upload(stack: Stack, pages: Pages) -> None:
    page = pages.new()
    new_patient(page, name="Hana Patient", email="hana@example.org")
    page.get_by_label("Mammogram").check()
    page.get_by_label("View 1 image").wait_for()
    # The only row cannot be removed.
    assert page.locator(".view-row").count() == 1
    assert not page.get_by_role("button", name="Remove view 1").is_visible()
    add = page.get_by_role("button", name="Add another view")
    for n in (2, 3, 4):
        add.click()
        page.get_by_label(f"View {n} image").wait_for()
    # Four views: no fifth can be added; now each row can be removed.
    assert page.locator(".view-row").count() == 4
    assert not add.is_visible()
    assert page.get_by_role("button", name="Remove view 1").is_visible()
    screenshot(page, "33-upload-four-views")
    page.get_by_role("button", name="Remove view 4").click()
    assert page.locator(".view-row").count() == 3 and add.is_visible()


def test_history_list_is_one_request(stack: Stack, pages: Pages, tmp_path: Any) -> None:
    chest = real_chest_xray()
    if chest is None:
        pytest.skip("real images absent: ../shared/data/nih-cxr14 is needed")
    page = pages.new()
    new_patient(page, name="Ivo Patient", email="ivo@example.org")
    for _ in range(3):
        nav(page, "New study")
        page.get_by_label("Chest X-ray image").set_input_files(str(chest))
        page.get_by_role("button", name="Upload and analyse").click()
        page.wait_for_url(re.compile(r"#/studies/\w+$"), timeout=120_000)
        page.get_by_test_id("result-label").wait_for(timeout=60_000)
    api_calls: list[str] = []
    page.on(
        "request",
        lambda r: (
            api_calls.append(r.url.split("://", 1)[1].split("/", 1)[1]) if "/v1/" in r.url else None
        ),
    )
    nav(page, "My studies")
    page.get_by_role("heading", name="My studies").wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.thumb')].filter(i => i.naturalWidth > 0)"
        ".length >= 3"
    )
    lists = [c for c in api_calls if c.startswith("v1/studies?")]
    details = [c for c in api_calls if re.fullmatch(r"v1/studies/\w+", c.split("?")[0])]
    # One list request and no study detail; the thumbnails' images (if not cached already
    # by the study pages just seen) are the only other calls, besides a heatmap the study
    # page just left may still have been fetching.
    others = [c for c in api_calls if c not in lists and not re.search("/(images|heatmaps)/", c)]
    assert len(lists) == 1 and details == [] and others == [], api_calls
    screenshot(page, "34-history-one-request")


def test_doctors_page_pages_through_the_list(stack: Stack, pages: Pages) -> None:
    import httpx

    for i in range(21):  # one more than the page's size
        body = {
            "email": f"gp{i}@clinic.example",
            "password": "correct-horse-42",
            "full_name": f"Dr GP {i:02d}",
            "role": "doctor",
            "specialty": "general_practice",
            "licence_number": f"GP-{i:04d}",
        }
        assert httpx.post(stack.url + "/v1/auth/signup", json=body).status_code == 201
    verify_pending_doctors(stack)
    page = pages.new()
    new_patient(page, name="Jo Patient", email="jo@example.org")
    nav(page, "Doctors")
    page.get_by_role("heading", name="Doctors").wait_for()
    page.get_by_label("Specialty").select_option("general_practice")
    items = page.locator("li.doctor-item")
    more = page.get_by_role("button", name="Show more doctors")
    more.wait_for()
    assert items.count() == 20
    more.click()
    page.get_by_text("Dr GP 20").wait_for()
    assert items.count() == 21 and not more.is_visible()
    names = items.locator("strong").all_inner_texts()
    assert len(set(names)) == 21  # no doctor twice across the pages
