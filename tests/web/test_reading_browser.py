"""How a chest result's reading looks in a real browser, for the cases the real models cannot
be made to produce on demand: a film outside the validated population (the stand-in service,
tests/gateway/fake_upstream.py, answers every film that way) reads "review recommended" for the
patient, with why for the doctor and a grey overlay; and a result stored before operating points
still displays, read at its own deprecated threshold, saying so."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import Api, admin_api
from tests.procs import Service, spawn, wait_ready
from tests.tb_service.svc_helpers import chest_png
from tests.web.conftest import LOGS, Pages, gateway_env, screenshot
from tests.web.test_browser import PASSWORD, login, overlay_loaded
from tests.web.test_result_wording import DIAGNOSIS_WORDS

pytestmark = pytest.mark.browser

OUTSIDE = "This image is outside what the screening aid was validated on: review recommended."


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, chromium_path: Path) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("reading-web")
    fake = spawn("tests.gateway.fake_upstream", {"FAKE_MODE": "outside"}, log_dir=LOGS)
    gateway: Service | None = None
    try:
        wait_ready(fake, timeout=60)
        gateway = spawn("gateway", gateway_env(tmp, fake.url, fake.url), log_dir=LOGS)
        wait_ready(gateway, timeout=90)
        yield {"url": gateway.url, "db": tmp / "irmi.db"}
    finally:
        if gateway is not None:
            gateway.stop()
        fake.stop()


@pytest.fixture
def pages(browser: Any, gw: dict[str, Any]) -> Iterator[Pages]:
    p = Pages(browser, gw["url"])
    try:
        yield p
    finally:
        p.close()
    assert not p.errors, p.errors


def _account(base: str, email: str, name: str, **extra: str) -> httpx.Client:
    body = {"email": email, "password": PASSWORD, "full_name": name, **extra}
    assert httpx.post(base + "/v1/auth/signup", json=body).status_code == 201
    r = httpx.post(base + "/v1/auth/login", json={"email": email, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    return httpx.Client(base_url=base, headers=headers, timeout=60)


def _result(page: Any) -> str:
    page.get_by_test_id("result-label").wait_for(timeout=60_000)
    return page.get_by_test_id("result-label").inner_text().strip()


def test_outside_population_and_a_stored_legacy_result(gw: dict[str, Any], pages: Pages) -> None:
    base = gw["url"]
    pat_api = _account(base, "lin@example.org", "Lin Patient", role="patient")
    doc_api = _account(
        base,
        "dr.okafor@clinic.example",
        "Dr Ada Okafor",
        role="doctor",
        specialty="radiology",
        licence_number="GMC-1234567",
    )
    doctor_id = doc_api.get("/v1/users/me").json()["id"]
    admin = admin_api(Api(base), f"sqlite+aiosqlite:///{gw['db']}")
    assert admin.post(f"/v1/admin/doctors/{doctor_id}/verify", json={}).status_code == 200
    r = pat_api.post("/v1/studies/chest", files={"file": ("x.png", chest_png(), "image/png")})
    assert r.status_code == 201, r.text
    study = r.json()
    r = pat_api.post(
        "/v1/consultations",
        json={"study_id": study["id"], "doctor_id": doctor_id, "question": "What does it mean?"},
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]

    # The patient: "review recommended", because the film is outside what was validated.
    pat = pages.new()
    login(pat, "lin@example.org")
    pat.get_by_role("heading", name="New study").wait_for()
    pat.goto(f"/#/studies/{study['id']}")
    assert _result(pat) == "Review recommended"
    assert pat.get_by_test_id("result-explanation").inner_text().startswith(OUTSIDE)
    text = pat.locator("main").inner_text()
    assert not DIAGNOSIS_WORDS.findall(text) and not re.search(r"\d%|/ 100", text), text
    screenshot(pat, "40-patient-outside-population")

    # The doctor: the category, why the answer is not trusted, a grey overlay's legend.
    doc = pages.new()
    login(doc, "dr.okafor@clinic.example")
    doc.get_by_role("heading", name="Inbox").wait_for()
    doc.goto(f"/#/consultations/{cid}")
    assert _result(doc) == "Outside the validated population: review recommended"
    rel = doc.get_by_test_id("reliability").inner_text()
    assert "Outside the validated population" in rel and "mirrored" in rel, rel
    legend = doc.get_by_test_id("overlay-legend")
    assert "Grey: the score is not trusted" in legend.inner_text()
    assert legend.locator(".score-bar.untrusted").count() == 1
    assert "Findings" not in doc.locator("main").inner_text()
    doc.wait_for_function(
        "() => [...document.querySelectorAll('img.overlay')].some(i => i.naturalWidth > 0)"
    )
    assert overlay_loaded(doc)
    # The overlay lies over the box it covers (the stand-in's: x 2 to 30, in film pixels).
    width = doc.locator("img.base").evaluate("i => i.naturalWidth")
    left, right = doc.locator("img.overlay").evaluate("i => [i.style.left, i.style.width]")
    assert float(left.rstrip("%")) == pytest.approx(2 / width * 100, rel=1e-4), left
    assert float(right.rstrip("%")) == pytest.approx(28 / width * 100, rel=1e-4), right
    screenshot(doc, "41-doctor-outside-population")

    # A result stored before operating points (no category, point, map or reliability).
    with sqlite3.connect(gw["db"]) as db:
        stored = json.loads(
            db.execute("SELECT result FROM studies WHERE id = ?", (study["id"],)).fetchone()[0]
        )
        for key in ("category", "operating_point", "score_map", "effective", "reliability"):
            stored.pop(key, None)
        stored["heatmap"] = None
        db.execute("UPDATE studies SET result = ? WHERE id = ?", (json.dumps(stored), study["id"]))
    doc.reload()
    assert _result(doc) == "No finding flagged"  # its label was "normal" at threshold 0.5
    legacy = doc.get_by_test_id("legacy-point").inner_text()
    assert "Stored before operating points" in legacy and "0.5000" in legacy, legacy
    assert "Score ≥ 50.0 / 100" in doc.get_by_test_id("operating-point").inner_text()
    screenshot(doc, "42-doctor-legacy-result")
    pat.reload()
    assert _result(pat) == "No finding flagged"
    expl = pat.get_by_test_id("result-explanation").inner_text()
    assert "your doctor still reviews the images" in expl
    screenshot(pat, "43-patient-legacy-result")
