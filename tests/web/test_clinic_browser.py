"""DICOM in the browser and the study on paper, in a real browser against the real services: a
DICOM chest study shows its display image (the gateway's rendering; the original is never
fetched unless downloaded), the window preset changes it, the history list fetches small
thumbnails only (requests and bytes counted), and printing the study page gives the report:
identifiers shown, navigation and buttons hidden."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.test_study_exports import chest_dicom
from tests.web.conftest import SHOTS, Pages, Stack, real_chest_xray, screenshot
from tests.web.test_browser import PASSWORD, nav, new_patient

pytestmark = pytest.mark.browser

HISTORY_PAGE = 10
NAME = "Zoë Printer"


def _api_paths(page: Any) -> list[tuple[str, Any]]:
    """Every /v1/ request the page makes from now on, with its response once finished."""
    seen: list[tuple[str, Any]] = []
    page.on(
        "requestfinished",
        lambda r: (
            seen.append((r.url.split("://", 1)[1].split("/", 1)[1], r)) if "/v1/" in r.url else None
        ),
    )
    return seen


def _upload_more(stack: Stack, email: str, files: list[tuple[str, bytes, str]]) -> None:
    with httpx.Client(base_url=stack.url, timeout=120) as client:
        r = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        token = r.json()["access_token"]
        for name, data, media in files:
            up = client.post(
                "/v1/studies/chest",
                files={"file": (name, data, media)},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert up.status_code == 201, up.text


def test_dicom_study_history_thumbnails_and_print(
    stack: Stack, pages: Pages, tmp_path: Path
) -> None:
    chest = real_chest_xray()
    if chest is None:
        pytest.skip("real images absent: ../shared/data/nih-cxr14 is needed")
    dcm = tmp_path / "chest.dcm"
    dcm.write_bytes(chest_dicom())
    page = pages.new()
    new_patient(page, name=NAME, email="zoe.printer@example.org")
    calls = _api_paths(page)
    page.get_by_label("Chest X-ray image").set_input_files(str(dcm))
    page.get_by_role("button", name="Upload and analyse").click()
    page.wait_for_url(re.compile(r"#/studies/\w+$"), timeout=120_000)
    page.get_by_test_id("result-label").wait_for(timeout=120_000)
    page.wait_for_function(
        "() => { const i = document.querySelector('img.base');"
        " return i && i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0; }"
    )
    assert page.locator(".no-preview").count() == 0
    study_id = page.url.rsplit("/", 1)[-1]
    shown = [p for p, _ in calls if re.search(r"/images/\w+/display$", p)]
    originals = [p for p, _ in calls if re.search(r"/images/\w+$", p.split("?")[0])]
    assert shown and originals == [], [p for p, _ in calls]
    # The display image is the film, not black: sample its pixels in the page.
    mean = page.evaluate(
        """() => {
          const i = document.querySelector('img.base');
          const c = document.createElement('canvas');
          c.width = i.naturalWidth;
          c.height = i.naturalHeight;
          const g = c.getContext('2d');
          g.drawImage(i, 0, 0);
          const d = g.getImageData(0, 0, c.width, c.height).data;
          let s = 0;
          for (let k = 0; k < d.length; k += 4) s += d[k];
          return s / (d.length / 4);
        }"""
    )
    assert 30 < mean < 225, mean
    screenshot(page, "50-dicom-study")

    # The lung preset: another rendering, fetched as such.
    before = page.locator("img.base").get_attribute("src")
    with page.expect_response(lambda r: r.url.endswith("/display?preset=lung")) as got:
        page.get_by_label("Window").select_option("lung")
    assert got.value.status == 200 and got.value.headers["content-type"] == "image/png"
    page.wait_for_function(
        "(old) => { const i = document.querySelector('img.base');"
        " return i.src !== old && i.complete && i.naturalWidth > 0; }",
        arg=before,
    )

    # Downloads: the report as a PDF, and the original only now, when asked for.
    with page.expect_download() as report:
        page.get_by_role("button", name="Download the report (PDF)").click()
    assert report.value.suggested_filename == f"irmi-study-{study_id}.pdf"
    assert Path(report.value.path()).read_bytes().startswith(b"%PDF")
    with page.expect_download() as original:
        page.get_by_role("button", name="Download the original (DICOM)").click()
    assert original.value.suggested_filename.endswith(".dcm")
    assert Path(original.value.path()).read_bytes() == dcm.read_bytes()
    assert [p for p, _ in calls if re.search(r"/images/\w+$", p)], "the download's request"

    # Printing: the report, not the app chrome.
    page.emulate_media(media="print")
    assert page.locator(".topbar").is_hidden() and page.locator("#nav").is_hidden()
    assert all(not b.is_visible() for b in page.locator("main button").all())
    ids = page.get_by_test_id("print-identifiers")
    assert ids.is_visible()
    text = ids.inner_text()
    assert NAME in text and study_id in text and "Study date" in text
    assert page.get_by_test_id("result-label").is_visible()
    assert page.locator("img.base").is_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "51-study-print.png"), full_page=True)
    pdf = page.pdf(format="A4", print_background=True)
    (SHOTS / "51-study-print.pdf").write_bytes(pdf)
    from pypdf import PdfReader

    printed = PdfReader(io.BytesIO(pdf))
    assert len(printed.pages) <= 2, len(printed.pages)
    printed_text = " ".join(p.extract_text() or "" for p in printed.pages)
    assert "Log out" not in printed_text and "Download the report" not in printed_text
    page.emulate_media(media="screen")

    # History: ten studies (DICOM and PNG), thumbnails only.
    raw = chest.read_bytes()
    more = [("c.dcm", dcm.read_bytes(), "application/dicom")] * 4 + [
        ("c.png", raw, "image/png")
    ] * 5
    _upload_more(stack, "zoe.printer@example.org", more)
    calls.clear()
    nav(page, "My studies")
    page.get_by_role("heading", name="My studies").wait_for()
    page.wait_for_function(
        "(n) => [...document.querySelectorAll('img.thumb')].filter(i => i.naturalWidth > 0)"
        ".length >= n",
        arg=HISTORY_PAGE,
    )
    page.wait_for_timeout(300)  # any stray request would land now (not an assertion)
    paths = [p for p, _ in calls]
    thumbs = [(p, r) for p, r in calls if p.endswith("/thumbnail")]
    lists = [p for p in paths if p.startswith("v1/studies?")]
    assert len(lists) == 1 and len(thumbs) == HISTORY_PAGE, paths
    assert len(paths) == 1 + HISTORY_PAGE, paths
    sizes = [r.sizes()["responseBodySize"] for _, r in thumbs]
    total = sum(sizes) + sum(r.sizes()["responseBodySize"] for p, r in calls if p in lists)
    print(f"\nhistory of {HISTORY_PAGE}: {len(paths)} requests, {total} bytes (thumbnails {sizes})")
    assert max(sizes) < 20_000 and total < 200_000, sizes
    screenshot(page, "52-history-thumbnails")
