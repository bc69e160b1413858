"""Smaller holes over real HTTP: JSON bodies bounded per route, ``HEAD /``, doctors paginated,
the history list carrying what it shows (one request draws the page)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.gateway.conftest import Api, gateway_env, run_gateway, signup_login, verify_doctor
from tests.procs import REPO, Service, served_version
from tests.tb_service.svc_helpers import chest_png

JSON_LIMIT = 64 * 1024  # the gateway's default max_json_bytes


@pytest.fixture(scope="module")
def edges_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('edges-db') / 'gw.db'}"


@pytest.fixture(scope="module")
def gw(
    upstreams: dict[str, str], edges_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("edges")
    env = gateway_env(tmp, edges_db, upstreams["tb"], upstreams["bc"])
    with run_gateway(env, tmp) as svc:
        yield svc


def _raw(port: int, head: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    return raw.decode(errors="replace")


def test_json_bodies_have_a_small_limit_uploads_the_big_one(gw: Service) -> None:
    anon = Api(gw.url)
    p = anon.as_token(signup_login(anon, "json@example.org")["access_token"])
    # A 1 MB question: 413 before it is parsed (it used to be read whole, then 422).
    big = {"study_id": "x", "doctor_id": "y", "question": "q" * 1_000_000}
    r = p.post("/v1/consultations", json=big)
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "payload_too_large"
    assert r.json()["error"]["details"]["max_bytes"] == JSON_LIMIT
    # Declared 50 MB on a JSON route (sign-up, no auth needed): refused from the headers alone.
    reply = _raw(
        gw.port,
        b"POST /v1/auth/signup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000000\r\n\r\n",
    )
    assert reply.startswith("HTTP/1.1 413"), reply[:200]
    assert "payload_too_large" in reply
    # The same size on a route with a path parameter.
    reply = _raw(
        gw.port,
        b"POST /v1/consultations/abc/reply HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n",
    )
    assert reply.startswith("HTTP/1.1 413"), reply[:200]
    # A small JSON body still validates (422), and an upload over the JSON limit is accepted.
    assert p.post("/v1/consultations", json={"question": "hi"}).status_code == 422
    xray = chest_png(400, 380)
    assert len(xray) > JSON_LIMIT
    r = p.post("/v1/studies/chest", files={"file": ("x.png", xray, "image/png")})
    # Analysed (201) or refused by the chest gate (the synthetic film may fail the trained
    # gate), never cut by the body limit.
    assert r.status_code in {201, 422}, r.text
    assert r.json().get("error", {}).get("code") in {None, "not_a_chest_xray"}


def test_head_index_is_200(gw: Service) -> None:
    api = Api(gw.url)
    head = api.head("/")
    assert head.status_code == 200, head.text
    assert head.headers["content-type"].startswith("text/html")
    assert head.content == b""
    get = api.get("/")
    assert get.status_code == 200 and int(head.headers["content-length"]) == len(get.content)


def test_doctors_are_paginated(gw: Service, edges_db: str) -> None:
    anon = Api(gw.url)
    for i in range(3):
        doctor = signup_login(
            anon,
            f"doc{i}@clinic.example",
            "doctor",
            specialty="oncology",
            licence_number=f"LIC-10{i}",
        )
        verify_doctor(anon, edges_db, doctor["user"]["id"])
    # A pending doctor is never listed (nor counted) for patients.
    signup_login(
        anon, "pending@clinic.example", "doctor", specialty="oncology", licence_number="LIC-PEND"
    )
    p = anon.as_token(signup_login(anon, "pager@example.org")["access_token"])
    everything = p.get("/v1/doctors", params={"specialty": "oncology"}).json()
    assert everything["total"] == 3 and len(everything["items"]) == 3  # default: first page
    assert everything["limit"] == 50 and everything["offset"] == 0
    first = p.get("/v1/doctors", params={"specialty": "oncology", "limit": 2}).json()
    rest = p.get("/v1/doctors", params={"specialty": "oncology", "limit": 2, "offset": 2}).json()
    assert [len(first["items"]), len(rest["items"])] == [2, 1]
    assert first["total"] == rest["total"] == 3
    pages = [d["id"] for d in first["items"] + rest["items"]]
    assert pages == [d["id"] for d in everything["items"]]  # one stable order across pages
    too_big = p.get("/v1/doctors", params={"limit": 101})
    assert too_big.status_code == 422 and too_big.json()["error"]["code"] == "validation_error"


def test_history_list_carries_the_thumbnail(gw: Service) -> None:
    anon = Api(gw.url)
    p = anon.as_token(signup_login(anon, "thumbs@example.org")["access_token"])
    xray = chest_png(300, 260)
    created = p.post("/v1/studies/chest", files={"file": ("x.png", xray, "image/png")}).json()
    page = p.get("/v1/studies").json()
    (item,) = page["items"]
    assert item["id"] == created["id"] and item["label"] == created["chest_result"]["label"]
    # A small JPEG rendered from the original, never the original itself (issue 16, item 5).
    assert item["thumbnail_url"] == created["images"][0]["thumbnail_url"]
    assert item["thumbnail_url"] != created["images"][0]["url"]
    thumb = p.get(item["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content.startswith(b"\xff\xd8") and thumb.content != xray


def test_openapi_documents_the_new_fields(gw: Service) -> None:
    doc = Api(gw.url).get("/openapi.json").json()
    assert "thumbnail_url" in doc["components"]["schemas"]["StudySummary"]["properties"]
    assert {"total", "limit", "offset"} <= set(
        doc["components"]["schemas"]["DoctorList"]["properties"]
    )
    params = {p["name"] for p in doc["paths"]["/v1/doctors"]["get"]["parameters"]}
    assert {"specialty", "limit", "offset"} <= params


def test_study_models_carry_the_cards_measured_figures(gw: Service) -> None:
    from tests.web.conftest import real_chest_xray

    chest = real_chest_xray()
    models = REPO / "tb_service" / "models"
    card_path = (
        models / "chest-abnormality" / served_version(models, "chest-abnormality") / "card.json"
    )
    if chest is None or not card_path.exists():
        pytest.skip("needs a real chest X-ray (../shared/data) and the committed chest model")
    anon = Api(gw.url)
    p = anon.as_token(signup_login(anon, "figures@example.org")["access_token"])
    other = anon.as_token(signup_login(anon, "nosy@example.org")["access_token"])
    study = p.post("/v1/studies/chest", files={"file": ("x.jpg", chest.read_bytes(), "image/jpeg")})
    assert study.status_code == 201, study.text
    sid = study.json()["id"]
    body = p.get(f"/v1/studies/{sid}/models").json()
    by_name = {m["name"]: m for m in body["items"]}
    model = by_name["chest-abnormality"]
    card = json.loads(card_path.read_text())
    assert model["version"] == model["card_version"] == str(card["version"])
    test = card["metrics"]["test"]
    got = {f["metric"]: f for f in model["figures"] if not f["label"]}
    for metric in ("sensitivity", "specificity", "auc"):
        assert got[metric]["value"] == test[metric]["value"]
        assert got[metric]["ci95"] == test[metric]["ci95"]
        assert got[metric]["split"] == "test"
    assert model["intended_use"] == card["intended_use"]
    assert other.get(f"/v1/studies/{sid}/models").status_code == 404  # not theirs


def test_card_figures_of_a_multiclass_card() -> None:
    from gateway.routes.models import card_figures

    card = {
        "metrics": {
            "test": {
                "auc_malignant_vs_rest": {"value": 0.67, "ci_low": 0.47, "ci_high": 0.84},
                "malignant_at_threshold": {"sensitivity": 0.8, "specificity": 0.63},
            }
        }
    }
    figures = [f.model_dump() for f in card_figures(card)]
    assert figures == [
        {
            "metric": "sensitivity",
            "value": 0.8,
            "ci95": None,
            "label": "malignant",
            "split": "test",
        },
        {
            "metric": "specificity",
            "value": 0.63,
            "ci95": None,
            "label": "malignant",
            "split": "test",
        },
        {
            "metric": "auc",
            "value": 0.67,
            "ci95": (0.47, 0.84),
            "label": "malignant",
            "split": "test",
        },
    ]
    assert card_figures({}) == [] and card_figures({"metrics": {"test": "n/a"}}) == []


def test_card_figures_of_the_committed_segmentation_and_orientation_cards() -> None:
    """A doctor reads the lung-seg overlap and the orientation rates, not 'no figures'."""
    import json

    from gateway.routes.models import card_figures
    from tb_service.settings import MODELS_DIR

    for name, metrics in (
        ("lung-seg", {"dice", "iou"}),
        ("chest-orientation", {"accuracy_8way", "mirror_detected", "mirror_false_flag"}),
    ):
        card = json.loads((MODELS_DIR / name / "1" / "card.json").read_text())
        figures = card_figures(card)
        assert {f.metric for f in figures} == metrics, name
        assert all(f.ci95 is not None and f.ci95[0] <= f.value <= f.ci95[1] for f in figures)


def test_card_figures_of_the_cross_validated_mammography_cards() -> None:
    """mammo-view/2 and mammo-density/1 were measured out-of-fold: a doctor reads those
    figures (and the screen's operating point), not 'no measured figures'."""
    import json

    from bc_service.settings import MODELS_DIR
    from gateway.routes.models import card_figures

    for folder, metrics in (
        ("mammo-view/2", {"auc", "sensitivity", "specificity"}),
        ("mammo-density/1", {"accuracy", "quadratic_kappa"}),
    ):
        card = json.loads((MODELS_DIR / folder / "card.json").read_text())
        figures = card_figures(card)
        oof = [f for f in figures if f.split == "out-of-fold"]
        assert {f.metric for f in oof} == metrics, folder
        assert {f.split for f in figures} <= {"out-of-fold", "test"}  # the fixed test split too
        assert all(f.ci95 is not None and f.ci95[0] <= f.value <= f.ci95[1] for f in figures)
    view = card_figures(json.loads((MODELS_DIR / "mammo-view/2/card.json").read_text()))
    assert {f.label for f in view if f.metric == "auc"} == {
        "abnormal vs normal breasts",
        "malignant vs benign lesions",
    }
