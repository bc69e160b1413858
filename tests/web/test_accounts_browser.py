"""The account screens in a real browser (Debian's headless chromium): a doctor waits for
verification, an admin verifies them on the admin screen, a patient withdraws the doctor's
access and deletes the study (the consultation stays and says so), and a forgotten password
is reset through the link. The gateway runs against the stand-in inference service
(tests/gateway/fake_upstream.py): these screens are about accounts, not images."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import create_admin_cli
from tests.procs import Service, spawn, wait_ready
from tests.tb_service.svc_helpers import chest_png
from tests.web.conftest import LOGS, Pages, gateway_env, screenshot

pytestmark = pytest.mark.browser

PASSWORD = "correct-horse-42"
LINK = re.compile(r"https?://\S+/#/reset\?token=([\w-]+)")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, chromium_path: Path) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("accounts-web")
    fake = spawn("tests.gateway.fake_upstream", {"FAKE_MODE": "ok"}, log_dir=LOGS)
    gateway: Service | None = None
    try:
        wait_ready(fake, timeout=60)
        gateway = spawn("gateway", gateway_env(tmp, fake.url, fake.url), log_dir=LOGS)
        wait_ready(gateway, timeout=90)
        yield {"svc": gateway, "db": f"sqlite+aiosqlite:///{tmp / 'irmi.db'}"}
    finally:
        if gateway is not None:
            gateway.stop()
        fake.stop()


@pytest.fixture
def pages(browser: Any, gw: dict[str, Any]) -> Iterator[Pages]:
    p = Pages(browser, gw["svc"].url)
    try:
        yield p
    finally:
        p.close()
    assert not p.errors, p.errors


def login(page: Any, email: str, password: str = PASSWORD) -> None:
    page.goto("/#/login")
    page.get_by_role("heading", name="Log in to IRMI").wait_for()
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Password").press("Enter")


def api_login(base: str, email: str) -> httpx.Client:
    r = httpx.post(base + "/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_verify_withdraw_delete_and_reset(gw: dict[str, Any], pages: Pages) -> None:
    base = gw["svc"].url
    # --- a doctor signs up and waits for verification
    doc = pages.new()
    doc.goto("/#/signup")
    doc.get_by_label("Doctor").check()
    doc.get_by_label("Specialty").select_option("radiology")
    doc.get_by_label("Licence number").fill("GMC-7654321")
    doc.get_by_label("Full name").fill("Dr Grace Hopper")
    doc.get_by_label("E-mail").fill("grace@clinic.example")
    doc.get_by_label("Password").fill(PASSWORD)
    doc.get_by_text("An administrator checks your licence").wait_for()
    doc.get_by_role("button", name="Create account").click()
    doc.get_by_role("heading", name="Inbox").wait_for()
    doc.get_by_test_id("doctor-status").wait_for()
    assert "waiting for an administrator" in doc.get_by_test_id("doctor-status").inner_text()
    screenshot(doc, "30-doctor-pending")

    # --- a patient cannot find the pending doctor
    body = {"email": "ada@example.org", "password": PASSWORD, "full_name": "Ada Lovelace"}
    assert httpx.post(base + "/v1/auth/signup", json=body).status_code == 201
    pat = pages.new()
    login(pat, "ada@example.org")
    pat.get_by_role("heading", name="New study").wait_for()
    pat.goto("/#/doctors")
    pat.get_by_text("No doctors in this specialty yet.").wait_for()

    # --- the admin (made by the CLI) verifies the doctor on the admin screen
    create_admin_cli(gw["db"], "admin@irmi.example", PASSWORD)
    adm = pages.new()
    login(adm, "admin@irmi.example")
    adm.get_by_role("heading", name="Doctors to verify").wait_for()
    card = adm.get_by_test_id("doctor-account").filter(has_text="Dr Grace Hopper")
    card.get_by_text("GMC-7654321").wait_for()
    card.get_by_role("button", name="Reject Dr Grace Hopper").click()
    card.get_by_role("alert").filter(has_text="Write the reason").wait_for()
    screenshot(adm, "31-admin-pending")
    card.get_by_role("button", name="Verify Dr Grace Hopper").click()
    adm.get_by_text("Nobody here.").wait_for()
    adm.get_by_label("Show").select_option("verified")
    verified = adm.get_by_test_id("doctor-account").filter(has_text="Dr Grace Hopper")
    verified.get_by_text("History of decisions").click()
    verified.get_by_text(re.compile("verified by Administrator")).first.wait_for()
    screenshot(adm, "32-admin-verified")
    doc.reload()
    doc.get_by_text("No questions from patients yet.").wait_for()
    assert doc.get_by_test_id("doctor-status").count() == 0

    # --- the patient shares a study with the now verified doctor, who answers
    p, d = api_login(base, "ada@example.org"), api_login(base, "grace@clinic.example")
    study = p.post("/v1/studies/chest", files={"file": ("x.png", chest_png(), "image/png")})
    assert study.status_code == 201, study.text
    sid = study.json()["id"]
    doctor_id = d.get("/v1/users/me").json()["id"]
    c = p.post(
        "/v1/consultations", json={"study_id": sid, "doctor_id": doctor_id, "question": "Bad?"}
    )
    assert c.status_code == 201, c.text
    cid = c.json()["id"]
    answer = "Nothing alarming; let us talk at your next visit."
    assert d.post(f"/v1/consultations/{cid}/reply", json={"answer": answer}).status_code == 200

    # --- the patient withdraws the doctor's access; the record stays for both
    pat.goto(f"/#/consultations/{cid}")
    pat.get_by_test_id("reply").wait_for()
    pat.once("dialog", lambda dialog: dialog.accept())
    pat.get_by_role("button", name="Withdraw access").click()
    pat.get_by_test_id("access-notice").wait_for()
    assert "withdrew" in pat.get_by_test_id("access-notice").inner_text()
    screenshot(pat, "33-access-withdrawn")
    assert d.get(f"/v1/studies/{sid}").status_code == 404
    doc.goto(f"/#/consultations/{cid}")
    doc.get_by_test_id("access-notice").wait_for()
    assert doc.get_by_test_id("reply").inner_text() == answer
    assert doc.get_by_role("heading", name="The study and the system's result").count() == 0

    # --- the patient deletes the study: the consultation says so, for both
    assert p.delete(f"/v1/studies/{sid}").status_code == 204
    pat.goto("/#/consultations")
    pat.get_by_test_id("study-access").filter(has_text="Study deleted").wait_for()
    doc.reload()
    doc.get_by_text(re.compile("The patient deleted this study")).wait_for()
    screenshot(doc, "34-doctor-study-deleted")

    # --- a forgotten password, reset through the link (dev mode: the link is in the log)
    guest = pages.new()
    guest.goto("/#/login")
    guest.get_by_role("link", name="Forgot your password?").click()
    guest.get_by_role("heading", name="Forgotten password").wait_for()
    guest.get_by_label("E-mail").fill("ada@example.org")
    guest.get_by_role("button", name="Send me a reset link").click()
    guest.get_by_role("status").filter(has_text="a link to reset its password").wait_for()
    screenshot(guest, "35-forgot")
    deadline = time.monotonic() + 20
    while not (found := LINK.search(gw["svc"].logs())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert found
    guest.goto(f"/#/reset?token={found.group(1)}")
    guest.get_by_role("heading", name="Choose a new password").wait_for()
    assert "token" not in guest.url  # kept out of the address bar and history
    guest.get_by_label("New password").fill("a-brand-new-passw0rd")
    guest.get_by_role("button", name="Set the new password").click()
    guest.get_by_role("status").filter(has_text="Your password is changed").wait_for()
    screenshot(guest, "36-reset-done")
    assert p.get("/v1/users/me").status_code == 401  # every session ended
    login(guest, "ada@example.org", "a-brand-new-passw0rd")
    guest.get_by_role("heading", name="New study").wait_for()
