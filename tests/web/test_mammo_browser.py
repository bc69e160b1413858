"""A four-view mammogram in a real browser: the views hang as radiologists hang them (RCC and
LCC over RMLO and LMLO, the right breast on the viewer's left) whatever order they were
uploaded in; a patient reads the category in words, never a diagnosis word, a probability or
a model hash; a tag that contradicts the image is explained in whole sentences; each view's
overlay is the gateway's rendering of its score map."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.web.conftest import Pages, Stack, real_mammo_exam, screenshot, verify_pending_doctors
from tests.web.test_browser import login, mammogram_views, new_patient, signup
from tests.web.test_result_wording import DIAGNOSIS_WORDS, PATIENT_HEADLINES

pytestmark = pytest.mark.browser

HANGING = {"R-CC": (0, 0), "L-CC": (0, 1), "R-MLO": (1, 0), "L-MLO": (1, 1)}


def _places(page: Any) -> dict[str, tuple[float, float]]:
    """Each view card's (top, left) on the page, by its tag."""
    boxes = page.evaluate(
        """() => [...document.querySelectorAll('[data-testid=hanging] .view-card')].map(
             (c) => [c.dataset.tag, c.getBoundingClientRect().top,
                     c.getBoundingClientRect().left])"""
    )
    return {tag: (top, left) for tag, top, left in boxes}


def test_four_views_hang_and_patient_reads_words(stack: Stack, pages: Pages) -> None:
    exam = real_mammo_exam()
    if not exam:
        pytest.skip("real images absent: ../shared/data/mini-mias is needed")
    doc = pages.new()
    signup(doc, name="Dr Ada Reader", email="ada@clinic.example", doctor=True)
    doc.get_by_role("button", name="Create account").click()
    doc.get_by_role("heading", name="Inbox").wait_for()
    doc.get_by_role("button", name="Log out").click()
    verify_pending_doctors(stack)
    paths = {tag[0]: path for path, tag in exam}  # the left and the right MLO view
    # Uploaded out of hanging order; the CC rows carry MLO images (mini-mias has no CC
    # views), so their tags contradict the breast's shape (a tag conflict to explain).
    uploads = [
        (paths["L"], "L-MLO"),
        (paths["L"], "R-CC"),
        (paths["R"], "R-MLO"),
        (paths["R"], "L-CC"),
    ]
    pat = pages.new()
    new_patient(pat, name="Grace Patient", email="grace@example.org")
    mammogram_views(pat, uploads)
    pat.get_by_role("button", name="Upload and analyse").click()
    pat.wait_for_url(re.compile(r"#/studies/\w+$"), timeout=60_000)
    label = pat.get_by_test_id("result-label")
    label.wait_for(timeout=180_000)
    assert label.inner_text().strip() in PATIENT_HEADLINES
    pat.wait_for_function(
        "() => [...document.querySelectorAll('img.overlay')].filter(i => i.naturalWidth > 0)"
        ".length >= 4"
    )

    places = _places(pat)
    assert set(places) == set(HANGING), places
    tops = sorted({round(t) for t, _ in places.values()})
    lefts = sorted({round(x) for _, x in places.values()})
    assert len(tops) == 2 and len(lefts) == 2, places
    for tag, (row, col) in HANGING.items():
        top, left = places[tag]
        assert (round(top) == tops[row]) and (round(left) == lefts[col]), (tag, places)

    text = pat.locator("main").inner_text().replace("Analysis complete: 100%.", "")
    assert not DIAGNOSIS_WORDS.findall(text), DIAGNOSIS_WORDS.findall(text)
    assert not re.search(r"\d%|/ 100|sha256", text), text
    conflicts = pat.get_by_test_id("tag-conflict").all_inner_texts()
    assert conflicts, "a CC row carries an MLO image: its tag must be questioned"
    for sentence in conflicts:
        assert re.fullmatch(r"The [^;]+\.", sentence.strip()), sentence
    assert any("says this is a CC view, but" in c for c in conflicts), conflicts
    # Each breast's tissue in words (mammo-density), never as a probability.
    tissue = pat.get_by_test_id("breast-density").all_inner_texts()
    assert len(tissue) == 2 and all(
        t in ("Mostly fatty", "Fatty and glandular", "Dense") for t in tissue
    ), tissue
    if "Dense" in tissue:
        assert "can hide a finding" in pat.get_by_test_id("density-note").inner_text()
    # One overlay per view, the rendering of its score map (none named for a diagnosis).
    assert pat.locator("select").filter(has_text="evidence").count() == 0
    screenshot(pat, "40-patient-mammogram-hanging")

    # The doctor the study is shared with reads scores, the operating point and the hashes.
    pat.get_by_role("link", name="Ask a doctor about this study").click()
    pat.get_by_label(re.compile("Dr Ada Reader")).check()
    pat.get_by_label("Your question").fill("Should I worry?")
    pat.get_by_role("button", name="Send question").click()
    pat.get_by_role("heading", name="Your question to Dr Ada Reader").wait_for()
    login(doc, "ada@clinic.example")
    doc.get_by_role("link", name=re.compile("^Review and reply")).click()
    doc.get_by_test_id("result-label").wait_for(timeout=60_000)
    doc.wait_for_function(
        "() => [...document.querySelectorAll('img.overlay')].filter(i => i.naturalWidth > 0)"
        ".length >= 4"
    )
    main = doc.locator("main").inner_text()
    assert "sha256" in main
    assert re.search(r"Suspicion score\s+[\d.]+ / 100", main), main
    point = doc.get_by_test_id("operating-point").first.inner_text()
    assert re.search(r"n = \d+ abnormal breasts\)", point), point
    # The scale says what the score is, and why there is no benign-vs-malignant estimate.
    assert "never a risk" in doc.get_by_test_id("score-scale").inner_text()
    assert "0.70" in doc.get_by_test_id("malignancy-note").inner_text()
    assert "read with the other breast" in main
    assert "Where the model looked, not a lesion outline" in main
    assert set(_places(doc)) == set(HANGING)
    screenshot(doc, "41-doctor-mammogram-hanging")
