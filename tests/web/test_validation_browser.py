"""The site-validation screen in a real browser, against the real tb_service and its committed
chest model: an admin creates a run, uploads a zip of labelled test films, starts it, watches
it finish, reads the report, previews "sensitivity 0.90" (said to be in-sample), adopts it,
and sees it in force; then rolls it back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import Api, create_admin_cli, signup_login, verify_doctor
from tests.gateway.test_validation import DATA, MODELS, sample, zipped
from tests.procs import Service, spawn, wait_ready
from tests.web.conftest import LOGS, Pages, gateway_env, screenshot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (DATA / "nih-cxr14").is_dir(), reason=f"no nih-cxr14 under {DATA}"),
]
PASSWORD = "correct-horse-42"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, chromium_path: Path) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("validation-web")
    env = {"IRMI_TB_USE_GPU": "false", "IRMI_TB_MODELS_DIR": str(MODELS)}
    tb = spawn("tb_service", env, log_dir=LOGS)
    gateway: Service | None = None
    try:
        wait_ready(tb, timeout=240)
        gateway = spawn("gateway", gateway_env(tmp, tb.url, tb.url), log_dir=LOGS)
        wait_ready(gateway, timeout=90)
        yield {"svc": gateway, "db": f"sqlite+aiosqlite:///{tmp / 'irmi.db'}", "tmp": tmp}
    finally:
        if gateway is not None:
            gateway.stop()
        tb.stop()


def test_an_admin_validates_and_adopts_a_point(gw: dict[str, Any], browser: Any) -> None:
    create_admin_cli(gw["db"], "admin@irmi.example", PASSWORD)
    rows = sample()[::3]  # 14 films, both sources and classes
    archive = gw["tmp"] / "films.zip"
    archive.write_bytes(zipped(rows))
    pages = Pages(browser, gw["svc"].url)
    try:
        page = pages.new()
        page.goto("/#/login")
        page.get_by_label("E-mail").fill("admin@irmi.example")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_label("Password").press("Enter")
        page.get_by_role("link", name="Site validation").click()  # the admin nav
        page.get_by_role("heading", name="Site validation").wait_for()
        assert "card's point" in page.get_by_test_id("site-point").inner_text()
        page.get_by_label("Name").fill("Browser run")
        page.get_by_role("button", name="Create").click()
        run = page.get_by_test_id("validation-run").first
        run.get_by_role("heading", name="Browser run").wait_for()
        run.get_by_label("Add labelled images").set_input_files(str(archive))
        run.get_by_role("button", name="Upload").click()
        run = page.get_by_test_id("validation-run").first
        run.get_by_role("button", name="Start scoring").click()
        run = page.get_by_test_id("validation-run").first
        run.get_by_role("button", name="Show report").click(timeout=240_000)
        report = page.get_by_test_id("validation-report")
        report.wait_for()
        assert f"{len(rows)} films" in report.inner_text()
        assert "sensitivity 0.90" in page.get_by_test_id("validation-points").inner_text()
        screenshot(page, "60-validation-report")
        page.get_by_label("Point", exact=True).select_option("0.90")
        page.get_by_role("button", name="Preview").click()
        page.get_by_text("In-sample: chosen and measured on the same films").wait_for()
        page.get_by_role("button", name="Adopt this point").click()
        point = page.get_by_test_id("site-point")
        point.filter(has_text="Site point version 1").wait_for()
        screenshot(page, "61-validation-adopted")

        # A doctor reading a new result sees the site's point and what it was chosen for.
        base = gw["svc"].url
        anon = Api(base)
        patient = anon.as_token(signup_login(anon, "pat@irmi.example")["access_token"])
        film = (DATA / rows[0]["file"]).read_bytes()
        study = patient.post("/v1/studies/chest", files={"file": ("x.jpg", film, "image/jpeg")})
        assert study.status_code == 201, study.text
        doctor = signup_login(
            anon, "doc@irmi.example", "doctor", specialty="radiology", licence_number="L-9"
        )
        verify_doctor(anon, gw["db"], doctor["user"]["id"])
        ask = {"study_id": study.json()["id"], "doctor_id": doctor["user"]["id"], "question": "?"}
        assert patient.post("/v1/consultations", json=ask).status_code == 201
        reader = pages.new()
        reader.goto("/#/login")
        reader.get_by_label("E-mail").fill("doc@irmi.example")
        reader.get_by_label("Password").fill("s3cure-password")
        reader.get_by_label("Password").press("Enter")
        reader.get_by_role("link", name="Inbox").wait_for()
        reader.goto(f"/#/studies/{study.json()['id']}")
        op = reader.get_by_test_id("operating-point")
        op.wait_for()
        text = op.inner_text()
        assert "this site's point" in text and "chose the threshold" in text
        assert "Sensitivity:" in text and "optimistic" in text
        screenshot(reader, "62-doctor-reads-site-point")
        page.get_by_role("button", name="Roll back").click()
        point.filter(has_text="The model card's point").wait_for()
    finally:
        pages.close()
    assert not pages.errors, pages.errors
