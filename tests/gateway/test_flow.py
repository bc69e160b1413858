"""The whole patient -> doctor flow over real HTTP: ``python -m gateway`` with its database
(SQLite, and PostgreSQL when one can be started) and the inference services on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.bc_service.images import mammogram
from tests.gateway.conftest import Api, doctor_login, gateway_env, run_gateway, signup_login
from tests.tb_service.svc_helpers import blank_png, chest_png


def read_sse(api: Api, path: str, headers: dict[str, str] | None = None) -> list[dict]:
    events, current = [], {}
    with api.stream("GET", path, headers=headers or {}, timeout=60) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line == "":
                if "data" in current:
                    events.append(current)
                current = {}
            elif line.startswith(("id:", "event:", "data:")):
                key, _, value = line.partition(":")
                current[key] = value.strip()
    for ev in events:
        ev["data"] = json.loads(ev["data"])
    return events


def test_patient_doctor_flow(database_url: str, upstreams: dict[str, str], tmp_path: Path) -> None:
    env = gateway_env(tmp_path, database_url, upstreams["tb"], upstreams["bc"])
    with run_gateway(env, tmp_path) as gw:
        anon = Api(gw.url)
        patient = signup_login(anon, "pat@example.org")
        doctor = doctor_login(anon, "doc@example.org", "LIC-001", verified_in=database_url)
        p = anon.as_token(patient["access_token"])
        d = anon.as_token(doctor["access_token"])

        # chest: synchronous result, heatmap stored and served by URL
        xray = chest_png(300, 260)
        r = p.post("/v1/studies/chest", files={"file": ("x.png", xray, "image/png")})
        assert r.status_code == 201, r.text
        chest = r.json()
        assert chest["status"] == "succeeded" and chest["kind"] == "chest"
        assert chest["chest_result"]["label"] in {"normal", "abnormal"}
        heat = chest["chest_result"]["heatmap"]
        if heat is not None:
            h = p.get(heat["url"])
            assert h.status_code == 200 and h.content.startswith(b"\x89PNG")
        img = p.get(chest["images"][0]["url"])
        assert img.status_code == 200 and img.content == xray

        # an upstream 4xx is passed on in the envelope with its status; nothing is stored
        r = p.post("/v1/studies/chest", files={"file": ("b.png", blank_png(), "image/png")})
        assert r.status_code == 422 and r.json()["error"]["code"] == "not_a_chest_xray"
        assert p.get("/v1/studies").json()["total"] == 1

        # mammography: 202, then events from the gateway's database
        r = p.post(
            "/v1/studies/mammography",
            files=[
                ("L-MLO", ("a.png", mammogram(), "image/png")),
                ("R-MLO", ("b.png", mammogram(right=True), "image/png")),
            ],
        )
        assert r.status_code == 202, r.text
        accepted = r.json()
        events = read_sse(p, accepted["events_url"])
        kinds = [e["event"] for e in events]
        assert kinds[-1] == "result", events[-1]
        assert "progress" in kinds
        ids = [int(e["id"]) for e in events]
        assert ids == sorted(ids)
        # resume: Last-Event-ID replays only what came after
        again = read_sse(p, accepted["events_url"], {"Last-Event-ID": str(ids[-2])})
        assert [int(e["id"]) for e in again] == [ids[-1]]
        study = p.get(accepted["study_url"]).json()
        assert study["status"] == "succeeded"
        view = study["mammography_result"]["views"][0]
        for ref in view["heatmaps"].values():
            assert p.get(ref["url"]).content.startswith(b"\x89PNG")

        # history: newest first, paginated, filterable
        hist = p.get("/v1/studies").json()
        assert [s["id"] for s in hist["items"]] == [accepted["id"], chest["id"]]
        assert p.get("/v1/studies", params={"kind": "chest"}).json()["total"] == 1
        page = p.get("/v1/studies", params={"limit": 1, "offset": 1}).json()
        assert [s["id"] for s in page["items"]] == [chest["id"]] and page["total"] == 2

        # integrators: stateless predict routes with a `predict` API key store nothing
        key = p.post("/v1/api-keys", json={"name": "pacs", "scopes": ["predict"]}).json()["key"]
        k = anon.as_key(key)
        r = k.post("/v1/predict/chest", files={"file": ("x.png", xray, "image/png")})
        assert r.status_code == 200 and r.json()["label"] in {"normal", "abnormal"}
        r = k.post("/v1/predict/mammogram", files=[("files", ("m.png", mammogram(), "image/png"))])
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "succeeded" and len(r.json()["result"]["views"]) == 1
        assert p.get("/v1/studies").json()["total"] == 2

        # doctors by specialty; a consultation; the doctor sees the shared study only
        docs = p.get("/v1/doctors", params={"specialty": "radiology"}).json()["items"]
        assert [x["id"] for x in docs] == [doctor["user"]["id"]]
        assert d.get(f"/v1/studies/{chest['id']}").status_code == 404
        r = p.post(
            "/v1/consultations",
            json={
                "study_id": chest["id"],
                "doctor_id": doctor["user"]["id"],
                "question": "Is this bad?",
            },
        )
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        open_list = d.get("/v1/consultations", params={"status": "open"}).json()["items"]
        assert [c["id"] for c in open_list] == [cid]
        seen = d.get(f"/v1/studies/{chest['id']}")
        assert seen.status_code == 200 and seen.json()["chest_result"] is not None
        assert d.get(chest["images"][0]["url"]).status_code == 200
        assert d.get(f"/v1/studies/{accepted['id']}").status_code == 404  # not shared
        assert [s["id"] for s in d.get("/v1/studies").json()["items"]] == [chest["id"]]
        r = d.post(f"/v1/consultations/{cid}/reply", json={"answer": "Please see a clinician."})
        assert r.status_code == 200 and r.json()["status"] == "answered"
        assert d.post(f"/v1/consultations/{cid}/reply", json={"answer": "again"}).status_code == 409
        mine = p.get(f"/v1/consultations/{cid}").json()
        assert mine["answer"] == "Please see a clinician."
        assert p.post(f"/v1/consultations/{cid}/rating", json={"rating": 6}).status_code == 422
        assert p.post(f"/v1/consultations/{cid}/rating", json={"rating": 4}).status_code == 200
        assert p.post(f"/v1/consultations/{cid}/rating", json={"rating": 5}).status_code == 409
        docs = p.get("/v1/doctors").json()["items"]
        assert docs[0]["rating"] == 4.0 and docs[0]["ratings_count"] == 1

        # delete: the study, its files and the doctor's access go
        assert p.delete(f"/v1/studies/{chest['id']}").status_code == 204
        assert p.get(f"/v1/studies/{chest['id']}").status_code == 404
        assert d.get(chest["images"][0]["url"]).status_code == 404
        blobs = [f for f in (tmp_path / "images").rglob("*") if f.is_file()]
        assert len(blobs) >= 1  # the mammography study's files remain
        assert p.delete(f"/v1/studies/{accepted['id']}").status_code == 204
        assert not [f for f in (tmp_path / "images").rglob("*") if f.is_file()]

        # logout ends the session: the access token stops working too
        r = anon.post("/v1/auth/logout", json={"refresh_token": patient["refresh_token"]})
        assert r.status_code == 204
        assert p.get("/v1/users/me").status_code == 401
        assert httpx.get(gw.url + "/v2/health/ready").json()["checks"]["database"] is True


def test_any_replica_serves_the_events(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Two gateway replicas share the database (PostgreSQL when one can be started, else a
    SQLite file) and the image store (S3 on a real SeaweedFS when it runs, else one folder):
    an exam uploaded through one is followed (SSE) and read, with its images, through the
    other; deleting it through the other removes its objects."""
    from gateway.store import S3Store, blob_key
    from tests.gateway.conftest import create_pg_database, run_fake

    try:
        url = create_pg_database(request.getfixturevalue("postgres_server"))
    except pytest.skip.Exception:
        url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    s3: S3Store | None = None
    extra: dict[str, str] = {}
    try:
        endpoint = request.getfixturevalue("seaweedfs")
        extra = {
            "IRMI_GATEWAY_STORE": "s3",
            "IRMI_GATEWAY_S3_ENDPOINT_URL": endpoint,
            "IRMI_GATEWAY_S3_BUCKET": "irmi-replicas",
            "IRMI_GATEWAY_S3_ACCESS_KEY_ID": "k",
            "IRMI_GATEWAY_S3_SECRET_ACCESS_KEY": "s",
        }
        s3 = S3Store(
            "irmi-replicas", endpoint_url=endpoint, access_key_id="k", secret_access_key="s"
        )
    except pytest.skip.Exception:
        pass
    with run_fake("ok", tmp_path) as fake:
        env = gateway_env(tmp_path, url, fake.url, fake.url, **extra)
        with run_gateway(env, tmp_path / "a") as a, run_gateway(env, tmp_path / "b") as b:
            pair = signup_login(Api(a.url), "multi@example.org")
            via_a = Api(a.url, token=pair["access_token"])
            via_b = Api(b.url, token=pair["access_token"])  # same secret: tokens work on both
            image = mammogram()
            r = via_a.post(
                "/v1/studies/mammography", files=[("files", ("a.png", image, "image/png"))]
            )
            assert r.status_code == 202, r.text
            events = read_sse(via_b, r.json()["events_url"])
            assert events[-1]["event"] == "result"
            study = via_b.get(r.json()["study_url"]).json()
            assert study["status"] == "succeeded"
            assert via_b.get(study["images"][0]["url"]).content == image
            if s3 is not None:
                assert s3._exists(blob_key(image))
                assert not (tmp_path / "images").exists()
                ready = httpx.get(b.url + "/v2/health/ready").json()
                assert ready["checks"]["image_store"] is True
            assert via_b.delete(r.json()["study_url"]).status_code == 204
            assert via_a.get(r.json()["study_url"]).status_code == 404
            if s3 is not None:
                assert not s3._exists(blob_key(image))
