"""What a patient's deletion leaves, and a patient revoking a doctor's access, over HTTP
against a real gateway process.

Deleting a study removes its images, heatmaps, result and events, but the consultation (the
question, the doctor's answer, the rating) and the audit trail stay, marked as about a deleted
study, for the patient and the doctor alike. Revoking a doctor's access ends it at once: 404
for the study, its images and its heatmaps; the consultation record stays. After the
retention period ``python -m gateway.admin purge-records`` removes what a deletion left.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from tests.gateway.conftest import (
    Api,
    doctor_login,
    run_gateway,
    signup_login,
    sqlite_gateway_env,
)
from tests.procs import Service, run_module
from tests.tb_service.svc_helpers import chest_png


@pytest.fixture(scope="module")
def world(fakes: dict[str, Service], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("sharing")
    env = sqlite_gateway_env(tmp, fakes["ok"].url)
    with run_gateway(env, tmp) as svc:
        anon = Api(svc.url)
        patient = signup_login(anon, "pat@example.org")
        db = env["IRMI_GATEWAY_DATABASE_URL"]
        doctor = doctor_login(anon, "doc@example.org", "R-1", verified_in=db)
        yield {
            "p": anon.as_token(patient["access_token"]),
            "d": anon.as_token(doctor["access_token"]),
            "other": anon.as_token(signup_login(anon, "other@example.org")["access_token"]),
            "doctor_id": doctor["user"]["id"],
            "db_path": tmp / "gw.db",
        }


def shared_study(world: dict[str, Any], question: str) -> tuple[dict[str, Any], str]:
    p: Api = world["p"]
    r = p.post("/v1/studies/chest", files={"file": ("x.png", chest_png(), "image/png")})
    assert r.status_code == 201, r.text
    study = r.json()
    r = p.post(
        "/v1/consultations",
        json={"study_id": study["id"], "doctor_id": world["doctor_id"], "question": question},
    )
    assert r.status_code == 201, r.text
    return study, str(r.json()["id"])


def urls(study: dict[str, Any]) -> list[str]:
    out = [f"/v1/studies/{study['id']}", study["images"][0]["url"]]
    heatmap = study["chest_result"]["heatmap"]
    assert heatmap is not None
    return [*out, heatmap["url"]]


def test_deleting_a_study_keeps_the_consultation_and_its_audit(world: dict[str, Any]) -> None:
    p, d = world["p"], world["d"]
    study, cid = shared_study(world, "Is this bad?")
    assert all(d.get(u).status_code == 200 for u in urls(study))
    assert d.post(f"/v1/consultations/{cid}/reply", json={"answer": "See me."}).status_code == 200
    assert p.post(f"/v1/consultations/{cid}/rating", json={"rating": 5}).status_code == 200

    assert p.delete(f"/v1/studies/{study['id']}").status_code == 204
    assert all(p.get(u).status_code == 404 for u in urls(study))
    assert all(d.get(u).status_code == 404 for u in urls(study))
    for who in (p, d):
        r = who.get(f"/v1/consultations/{cid}")
        assert r.status_code == 200, r.text
        kept = r.json()
        assert kept["question"] == "Is this bad?" and kept["answer"] == "See me."
        assert kept["rating"] == 5 and kept["study_kind"] == "chest"
        assert kept["study_access"] == "deleted" and kept["study_deleted_at"]
        assert cid in [c["id"] for c in who.get("/v1/consultations").json()["items"]]
    assert study["id"] not in [s["id"] for s in d.get("/v1/studies").json()["items"]]
    with sqlite3.connect(world["db_path"]) as conn:
        actions = {
            a
            for (a,) in conn.execute(
                "SELECT action FROM audit_events WHERE study_id = ?", (study["id"],)
            )
        }
    assert {"read", "delete"} <= actions


def test_patient_revokes_a_doctors_access(world: dict[str, Any]) -> None:
    p, d, other = world["p"], world["d"], world["other"]
    study, cid = shared_study(world, "Second opinion?")
    assert all(d.get(u).status_code == 200 for u in urls(study))
    # only the patient who asked may revoke
    assert d.post(f"/v1/consultations/{cid}/revoke").status_code == 403
    assert other.post(f"/v1/consultations/{cid}/revoke").status_code == 404

    r = p.post(f"/v1/consultations/{cid}/revoke")
    assert r.status_code == 200, r.text
    assert r.json()["study_access"] == "revoked" and r.json()["access_revoked_at"]
    assert all(d.get(u).status_code == 404 for u in urls(study))
    assert study["id"] not in [s["id"] for s in d.get("/v1/studies").json()["items"]]
    kept = d.get(f"/v1/consultations/{cid}")
    assert kept.status_code == 200 and kept.json()["study_access"] == "revoked"
    assert p.get(f"/v1/studies/{study['id']}").status_code == 200  # the patient's own
    with sqlite3.connect(world["db_path"]) as conn:
        rows = conn.execute(
            "SELECT subject_user_id FROM audit_events WHERE action = 'revoke_share' "
            "AND study_id = ?",
            (study["id"],),
        ).fetchall()
    assert rows == [(world["doctor_id"],)]
    # asking the doctor again shares the study again
    r = p.post(
        "/v1/consultations",
        json={"study_id": study["id"], "doctor_id": world["doctor_id"], "question": "Again?"},
    )
    assert r.status_code == 201
    assert d.get(f"/v1/studies/{study['id']}").status_code == 200


def test_purge_records_applies_the_retention_period(world: dict[str, Any]) -> None:
    """``python -m gateway.admin purge-records``: consultations of studies deleted longer ago
    than ``record_retention_days`` go; the others, and recent audit rows, stay."""
    p = world["p"]
    study, old_cid = shared_study(world, "Old question")
    assert p.delete(f"/v1/studies/{study['id']}").status_code == 204
    study2, recent_cid = shared_study(world, "Recent question")
    assert p.delete(f"/v1/studies/{study2['id']}").status_code == 204
    with sqlite3.connect(world["db_path"]) as conn:
        conn.execute(
            "UPDATE consultations SET study_deleted_at = '2020-01-01 00:00:00' WHERE id = ?",
            (old_cid,),
        )
        audit_before = conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
    env: dict[str, str | None] = {
        "IRMI_DEV_MODE": "1",
        "IRMI_GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{world['db_path']}",
        "IRMI_GATEWAY_RECORD_RETENTION_DAYS": "365",
    }

    def purge(*args: str) -> str:
        out = run_module(["gateway.admin", "purge-records", *args], env)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "would delete 1 consultations" in purge("--dry-run")
    assert p.get(f"/v1/consultations/{old_cid}").status_code == 200
    assert "deleted 1 consultations of deleted studies and 0 audit rows" in purge()
    assert p.get(f"/v1/consultations/{old_cid}").status_code == 404
    assert p.get(f"/v1/consultations/{recent_cid}").json()["study_access"] == "deleted"
    with sqlite3.connect(world["db_path"]) as conn:
        assert conn.execute("SELECT count(*) FROM audit_events").fetchone()[0] == audit_before
