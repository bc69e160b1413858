"""Doctors' verification by admins, over HTTP against a real gateway process.

Sign-up never makes an admin; a doctor starts ``pending``: unlisted, unable to receive studies;
an admin (created by ``python -m gateway.admin create-admin``) verifies, suspends or rejects,
each decision an audit row; a suspended doctor's shares are suspended. Ratings count each
patient once, and only patients with an answered consultation rate.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import (
    Api,
    admin_api,
    create_admin_cli,
    doctor_login,
    run_gateway,
    signup_login,
    sqlite_gateway_env,
)
from tests.procs import Service, run_module
from tests.tb_service.svc_helpers import chest_png


@pytest.fixture(scope="module")
def gw(fakes: dict[str, Service], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("accounts")
    env = sqlite_gateway_env(tmp, fakes["ok"].url)
    with run_gateway(env, tmp) as svc:
        db = env["IRMI_GATEWAY_DATABASE_URL"]
        yield {"api": Api(svc.url), "db": db, "db_path": tmp / "gw.db"}


def doctor_signup(anon: Api, email: str) -> dict[str, Any]:
    return doctor_login(anon, email, "abc")


def patient_and_doctor(
    anon: Api, patient_email: str, doctor_email: str
) -> tuple[Api, Api, dict[str, Any]]:
    """Sessions of a new patient and a new (pending) doctor, and the doctor's login body."""
    patient = signup_login(anon, patient_email)
    doctor = doctor_signup(anon, doctor_email)
    return anon.as_token(patient["access_token"]), anon.as_token(doctor["access_token"]), doctor


def upload(p: Api) -> dict[str, Any]:
    r = p.post("/v1/studies/chest", files={"file": ("x.png", chest_png(), "image/png")})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_signup_never_makes_an_admin(gw: dict[str, Any]) -> None:
    anon: Api = gw["api"]
    body = {"email": "x@example.org", "password": "s3cure-password", "full_name": "X"}
    r = anon.post("/v1/auth/signup", json={**body, "role": "admin"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    login = {"email": body["email"], "password": body["password"]}
    assert anon.post("/v1/auth/login", json=login).status_code == 401  # no account was made


def test_pending_doctor_is_invisible_and_receives_nothing(gw: dict[str, Any]) -> None:
    anon: Api = gw["api"]
    p, d, doctor = patient_and_doctor(anon, "pat1@example.org", "doc1@example.org")
    doc_id = doctor["user"]["id"]
    assert doctor["user"]["doctor_status"] == "pending"
    assert doc_id not in [x["id"] for x in p.get("/v1/doctors").json()["items"]]
    assert p.get(f"/v1/doctors/{doc_id}").status_code == 404
    study = upload(p)
    r = p.post(
        "/v1/consultations", json={"study_id": study["id"], "doctor_id": doc_id, "question": "?"}
    )
    assert r.status_code == 403, r.text
    assert r.json()["error"]["details"]["reason"] == "doctor_not_verified"
    assert d.get(f"/v1/studies/{study['id']}").status_code == 404
    assert d.get("/v1/consultations").json()["items"] == []
    # neither doctors nor patients reach the admin routes
    for who in (p, d):
        assert who.get("/v1/admin/doctors").status_code == 403
        assert who.post(f"/v1/admin/doctors/{doc_id}/verify", json={}).status_code == 403


def test_admin_verifies_suspends_and_every_decision_is_audited(gw: dict[str, Any]) -> None:
    anon: Api = gw["api"]
    p, d, doctor = patient_and_doctor(anon, "pat2@example.org", "doc2@example.org")
    doc_id = doctor["user"]["id"]
    admin = admin_api(anon, gw["db"])
    me = admin.get("/v1/users/me").json()
    assert me["role"] == "admin"

    pending = admin.get("/v1/admin/doctors").json()
    assert doc_id in [x["id"] for x in pending["items"]]
    row = next(x for x in pending["items"] if x["id"] == doc_id)
    assert row["status"] == "pending" and row["licence_number"] == "abc"
    assert row["email"] == "doc2@example.org"

    r = admin.post(f"/v1/admin/doctors/{doc_id}/verify", json={"reason": "licence checked"})
    assert r.status_code == 200 and r.json()["status"] == "verified"
    assert r.json()["last_decision"]["admin"]["id"] == me["id"]
    assert d.get("/v1/users/me").json()["doctor_status"] == "verified"
    assert doc_id in [x["id"] for x in p.get("/v1/doctors").json()["items"]]
    study = upload(p)
    r = p.post(
        "/v1/consultations", json={"study_id": study["id"], "doctor_id": doc_id, "question": "?"}
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert d.get(f"/v1/studies/{study['id']}").status_code == 200

    # a wrong transition, and a suspension without a reason, are refused
    assert admin.post(f"/v1/admin/doctors/{doc_id}/reject", json={"reason": "x"}).status_code == 409
    assert admin.post(f"/v1/admin/doctors/{doc_id}/suspend", json={}).status_code == 422
    r = admin.post(f"/v1/admin/doctors/{doc_id}/suspend", json={"reason": "licence lapsed"})
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    # suspended: unlisted, the share suspended, no reply, no new study
    assert doc_id not in [x["id"] for x in p.get("/v1/doctors").json()["items"]]
    assert d.get(f"/v1/studies/{study['id']}").status_code == 404
    assert d.get(study["images"][0]["url"]).status_code == 404
    assert p.get(f"/v1/consultations/{cid}").json()["study_access"] == "suspended"
    assert d.post(f"/v1/consultations/{cid}/reply", json={"answer": "ok"}).status_code == 403
    r = p.post(
        "/v1/consultations", json={"study_id": study["id"], "doctor_id": doc_id, "question": "?"}
    )
    assert r.status_code == 403
    # verified again: the share is back
    assert admin.post(f"/v1/admin/doctors/{doc_id}/verify", json={}).status_code == 200
    assert d.get(f"/v1/studies/{study['id']}").status_code == 200
    assert p.get(f"/v1/consultations/{cid}").json()["study_access"] == "shared"

    history = admin.get(f"/v1/admin/doctors/{doc_id}/decisions").json()["items"]
    assert [(h["decision"], h["from_status"], h["to_status"]) for h in history] == [
        ("verify", "suspended", "verified"),
        ("suspend", "verified", "suspended"),
        ("verify", "pending", "verified"),
    ]
    assert history[1]["reason"] == "licence lapsed"
    assert {h["admin"]["id"] for h in history} == {me["id"]}
    # the audit rows themselves: who, when, about whom, what
    with sqlite3.connect(gw["db_path"]) as conn:
        rows = conn.execute(
            "SELECT user_id, at, details FROM audit_events "
            "WHERE action = 'doctor_verification' AND subject_user_id = ? ORDER BY id",
            (doc_id,),
        ).fetchall()
    assert len(rows) == 3 and all(u == me["id"] and at for u, at, _ in rows)
    assert '"reject"' not in "".join(det for *_, det in rows)

    # reject a pending application
    other = doctor_signup(anon, "doc3@example.org")
    r = admin.post(f"/v1/admin/doctors/{other['user']['id']}/reject", json={"reason": "fake"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    rejected = admin.get("/v1/admin/doctors", params={"status": "rejected"}).json()["items"]
    assert [x["id"] for x in rejected] == [other["user"]["id"]]
    assert admin.post("/v1/admin/doctors/nope/verify", json={}).status_code == 404


def test_ratings_count_each_consulting_patient_once(gw: dict[str, Any]) -> None:
    anon: Api = gw["api"]
    doctor = doctor_login(anon, "rated@example.org", "ONC-1", "oncology", verified_in=gw["db"])
    doc_id = doctor["user"]["id"]
    d = anon.as_token(doctor["access_token"])
    a = anon.as_token(signup_login(anon, "rater-a@example.org")["access_token"])
    c = anon.as_token(signup_login(anon, "rater-c@example.org")["access_token"])
    stranger = anon.as_token(signup_login(anon, "stranger@example.org")["access_token"])

    def answered(p: Api) -> str:
        study = upload(p)
        r = p.post(
            "/v1/consultations",
            json={"study_id": study["id"], "doctor_id": doc_id, "question": "?"},
        )
        assert r.status_code == 201, r.text
        cid = str(r.json()["id"])
        assert d.post(f"/v1/consultations/{cid}/reply", json={"answer": "ok"}).status_code == 200
        return cid

    a_ids = [answered(a) for _ in range(4)]
    c_id = answered(c)
    # only the consulting patient rates; not a stranger, not the doctor
    assert stranger.post(f"/v1/consultations/{c_id}/rating", json={"rating": 1}).status_code == 404
    assert d.post(f"/v1/consultations/{c_id}/rating", json={"rating": 5}).status_code == 403
    for cid, stars in zip(a_ids, [5, 1, 1, 1], strict=True):
        assert a.post(f"/v1/consultations/{cid}/rating", json={"rating": stars}).status_code == 200
    assert c.post(f"/v1/consultations/{c_id}/rating", json={"rating": 5}).status_code == 200
    listed = a.get("/v1/doctors", params={"specialty": "oncology"}).json()["items"]
    mine = next(x for x in listed if x["id"] == doc_id)
    # patient A's four ratings weigh as one (mean 2.0), patient C's as one (5): 3.5 from 2
    assert mine["ratings_count"] == 2 and mine["rating"] == 3.5


def test_admin_cli_takes_no_password_from_argv(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    env: dict[str, str | None] = {"IRMI_DEV_MODE": "1", "IRMI_GATEWAY_DATABASE_URL": db}
    env["IRMI_ADMIN_PASSWORD"] = None  # unset: no password from the environment
    base = ["gateway.admin", "create-admin", "--email", "root@example.org"]

    def run(args: list[str], stdin: str = "", **extra: str) -> subprocess.CompletedProcess[str]:
        return run_module(base + args, {**env, **extra}, stdin=stdin)

    assert run(["--password", "admin-password-1"]).returncode == 2  # no such option
    no_tty = run([])
    assert no_tty.returncode != 0 and "--password-stdin" in no_tty.stderr
    weak = run(["--password-stdin"], stdin="short\n")
    assert weak.returncode != 0 and "password" in weak.stderr
    assert run([], IRMI_ADMIN_PASSWORD="admin-password-1").returncode == 0
    again = run(["--password-stdin"], stdin="admin-password-2\n")
    assert again.returncode != 0 and "already exists" in again.stderr
    create_admin_cli(db, "second@example.org")
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        roles = conn.execute("SELECT email, role, password_hash FROM users").fetchall()
    assert {(e, r) for e, r, _ in roles} == {
        ("root@example.org", "admin"),
        ("second@example.org", "admin"),
    }
    assert all(h.startswith("$argon2id$") for *_, h in roles)
