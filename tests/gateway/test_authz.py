"""The authorization matrix over real HTTP: every cross-user access is refused.

Actors: the owner patient, another patient, the doctor the study is shared with, another
doctor, an expired token, a tampered token, a revoked API key, API keys of the wrong scope.
The matrix (actor x action -> status) is printed and written to tests/artifacts/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from tests.gateway.conftest import Api, gateway_env, run_gateway, signup_login, verify_doctor
from tests.procs import REPO, Service
from tests.tb_service.svc_helpers import chest_png

SECRET = "matrix-secret-0123456789abcdef0123456789"


@pytest.fixture(scope="module")
def world(
    fakes: dict[str, Service], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("authz")
    env = gateway_env(
        tmp,
        f"sqlite+aiosqlite:///{tmp / 'gw.db'}",
        fakes["ok"].url,
        fakes["ok"].url,
        IRMI_GATEWAY_JWT_SECRET=SECRET,
    )
    with run_gateway(env, tmp) as gw:
        anon = Api(gw.url)
        owner = signup_login(anon, "owner@example.org")
        other = signup_login(anon, "other@example.org")
        doc = signup_login(
            anon, "doc@example.org", "doctor", specialty="oncology", licence_number="L-1"
        )
        doc2 = signup_login(
            anon, "doc2@example.org", "doctor", specialty="oncology", licence_number="L-2"
        )
        for d in (doc, doc2):
            verify_doctor(anon, f"sqlite+aiosqlite:///{tmp / 'gw.db'}", d["user"]["id"])
        o = anon.as_token(owner["access_token"])
        study = o.post(
            "/v1/studies/chest", files={"file": ("x.png", chest_png(), "image/png")}
        ).json()
        study2 = o.post(
            "/v1/studies/chest", files={"file": ("y.png", chest_png(seed=1), "image/png")}
        ).json()
        cons = o.post(
            "/v1/consultations",
            json={"study_id": study["id"], "doctor_id": doc["user"]["id"], "question": "?"},
        ).json()
        keys = {}
        for name, scopes in {
            "predict": ["predict"],
            "studies": ["studies"],
            "revoked": ["predict", "studies"],
        }.items():
            r = o.post("/v1/api-keys", json={"name": name, "scopes": scopes})
            assert r.status_code == 201
            keys[name] = r.json()
        assert o.delete(f"/v1/api-keys/{keys['revoked']['id']}").status_code == 204
        now = int(time.time())
        base = {
            "sub": owner["user"]["id"],
            "role": "patient",
            "iss": "irmi-gateway",
            "typ": "access",
        }
        sid = jwt.decode(owner["access_token"], options={"verify_signature": False})["sid"]
        expired = jwt.encode(
            {**base, "sid": sid, "iat": now - 100, "exp": now - 10}, SECRET, "HS256"
        )
        parts = owner["access_token"].split(".")
        tampered_claims = jwt.utils.base64url_encode(
            jwt.api_jws._jws_global_obj._load(owner["access_token"])[1].replace(  # type: ignore[attr-defined]
                owner["user"]["id"].encode(), other["user"]["id"].encode()
            )
        ).decode()
        tampered = ".".join([parts[0], tampered_claims, parts[2]])
        forged = jwt.encode(
            {**base, "sid": sid, "iat": now, "exp": now + 60}, "not-the-secret-" + "x" * 32, "HS256"
        )
        actors = {
            "owner patient": anon.as_token(owner["access_token"]),
            "other patient": anon.as_token(other["access_token"]),
            "shared doctor": anon.as_token(doc["access_token"]),
            "other doctor": anon.as_token(doc2["access_token"]),
            "anonymous": anon,
            "expired token": anon.as_token(expired),
            "tampered token": anon.as_token(tampered),
            "forged token": anon.as_token(forged),
            "key scope=predict": anon.as_key(keys["predict"]["key"]),
            "key scope=studies": anon.as_key(keys["studies"]["key"]),
            "revoked key": anon.as_key(keys["revoked"]["key"]),
            "garbage key": anon.as_key("irmi_000000000000_nope"),
        }
        yield {
            "db": tmp / "gw.db",
            "gw": gw,
            "actors": actors,
            "study": study,
            "study2": study2,
            "cons": cons,
            "doc": doc,
        }


ACTIONS: dict[str, tuple[str, str]] = {
    "read study": ("GET", "/v1/studies/{sid}"),
    "read image": ("GET", "{image}"),
    "read heatmap": ("GET", "{heatmap}"),
    "display image": ("GET", "{image}/display"),
    "thumbnail": ("GET", "{image}/thumbnail"),
    "report PDF": ("GET", "/v1/studies/{sid}/report"),
    "FHIR report": ("GET", "/v1/studies/{sid}/fhir"),
    "study events": ("GET", "/v1/studies/{sid}/events"),
    "history": ("GET", "/v1/studies"),
    "upload chest": ("POST", "/v1/studies/chest"),
    "predict chest": ("POST", "/v1/predict/chest"),
    "read consultation": ("GET", "/v1/consultations/{cid}"),
    "reply": ("POST", "/v1/consultations/{cid}/reply"),
    "list doctors": ("GET", "/v1/doctors"),
    "create API key": ("POST", "/v1/api-keys"),
    "delete study": ("DELETE", "/v1/studies/{del}"),
    "list validation runs": ("GET", "/v1/admin/validation-runs"),
    "create validation run": ("POST", "/v1/admin/validation-runs"),
    "list site points": ("GET", "/v1/admin/site-points"),
    "roll back site point": ("POST", "/v1/admin/site-points/rollback"),
}
R, X = "allowed", "refused"
# Expected outcome per actor, in ACTIONS order ("allowed" = 2xx; refused = 401/403/404).
# Site validation is for administrators only: no actor of the matrix may use it.
ADMIN_ONLY = [X, X, X, X]
EXPECTED: dict[str, list[str]] = {
    "owner patient": [R, R, R, R, R, R, R, R, R, R, R, R, X, R, R, R, *ADMIN_ONLY],
    "other patient": [X, X, X, X, X, X, X, X, R, R, R, X, X, R, R, X, *ADMIN_ONLY],
    "shared doctor": [R, R, R, R, R, R, R, R, R, X, R, R, R, R, R, X, *ADMIN_ONLY],
    "other doctor": [X, X, X, X, X, X, X, X, R, X, R, X, X, R, R, X, *ADMIN_ONLY],
    "anonymous": [X] * 20,
    "expired token": [X] * 20,
    "tampered token": [X] * 20,
    "forged token": [X] * 20,
    "key scope=predict": [X, X, X, X, X, X, X, X, X, X, R, X, X, X, X, X, *ADMIN_ONLY],
    "key scope=studies": [R, R, R, R, R, R, R, R, R, R, X, X, X, X, X, R, *ADMIN_ONLY],
    "revoked key": [X] * 20,
    "garbage key": [X] * 20,
}


def _call(api: Api, method: str, path: str, action: str) -> int:
    kwargs: dict[str, Any] = {}
    if action in {"upload chest", "predict chest"}:
        kwargs["files"] = {"file": ("x.png", chest_png(), "image/png")}
    elif action == "reply":
        kwargs["json"] = {"answer": "ok"}
    elif action == "create API key":
        kwargs["json"] = {"name": "k", "scopes": ["predict"]}
    elif action == "create validation run":
        kwargs["json"] = {"name": "r", "modality": "chest"}
    elif action == "roll back site point":
        kwargs["json"] = {"modality": "chest"}
    if action == "study events":
        with api.stream(method, path) as r:
            return r.status_code
    return int(api.request(method, path, **kwargs).status_code)


def test_authorization_matrix(world: dict[str, Any]) -> None:
    study, cons = world["study"], world["cons"]
    subst = {
        "sid": study["id"],
        "cid": cons["id"],
        "image": study["images"][0]["url"],
        "heatmap": study["chest_result"]["heatmap"]["url"],
    }
    order = list(EXPECTED)
    # Destructive actions last: the owner deletes the study only after everyone else tried.
    order.remove("owner patient")
    order.append("owner patient")
    table: dict[str, list[str]] = {}
    mismatches = []
    for actor in order:
        api = world["actors"][actor]
        row = []
        for i, (action, (method, template)) in enumerate(ACTIONS.items()):
            # the studies-scoped key deletes another of the owner's studies
            victim = world["study2"]["id"] if actor == "key scope=studies" else study["id"]
            code = _call(api, method, template.format(**subst, **{"del": victim}), action)
            got = R if code < 300 else X
            row.append(f"{code}")
            if got != EXPECTED[actor][i]:
                mismatches.append(f"{actor} / {action}: {code}, expected {EXPECTED[actor][i]}")
            if got == X:
                assert code in {401, 403, 404}, (actor, action, code)
        table[actor] = row
    lines = ["| actor | " + " | ".join(ACTIONS) + " |", "|---" * (len(ACTIONS) + 1) + "|"]
    for actor in EXPECTED:
        lines.append(f"| {actor} | " + " | ".join(table[actor]) + " |")
    text = "\n".join(lines)
    print("\nauthorization matrix (HTTP status per actor and action)\n" + text)
    out = REPO / "tests" / "artifacts"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gateway_authz_matrix.md").write_text(text + "\n")
    assert not mismatches, "\n".join(mismatches)


def test_wrong_role_and_cross_user_writes(world: dict[str, Any]) -> None:
    a = world["actors"]
    doc_id = world["doc"]["user"]["id"]
    # a doctor cannot upload or ask; a patient cannot reply; another patient cannot share
    assert (
        a["shared doctor"]
        .post("/v1/consultations", json={"study_id": "x", "doctor_id": doc_id, "question": "q"})
        .status_code
        == 403
    )
    r = a["other patient"].post(
        "/v1/consultations",
        json={"study_id": world["study"]["id"], "doctor_id": doc_id, "question": "q"},
    )
    assert r.status_code == 404
    assert (
        a["other patient"]
        .post(f"/v1/consultations/{world['cons']['id']}/rating", json={"rating": 5})
        .status_code
        == 404
    )
    assert (
        a["other doctor"]
        .post(f"/v1/consultations/{world['cons']['id']}/reply", json={"answer": "x"})
        .status_code
        == 404
    )
    # refusal bodies use the envelope
    body = a["tampered token"].get("/v1/users/me").json()
    assert body["error"]["code"] == "unauthorized"
    assert a["revoked key"].get("/v1/studies").json()["error"]["details"]["reason"] == "revoked"
    body = a["key scope=predict"].get("/v1/studies").json()
    assert body["error"]["code"] == "forbidden"
    assert a["expired token"].get("/v1/users/me").json()["error"]["details"]["reason"] == "expired"


def test_audit_trail_records_reads(world: dict[str, Any]) -> None:
    import sqlite3

    db = world["db"]
    rows = (
        sqlite3.connect(db).execute("SELECT user_id, action, study_id FROM audit_events").fetchall()
    )
    actions = {a for _, a, _ in rows}
    assert {"create", "read", "read_image", "read_heatmap"} <= actions
