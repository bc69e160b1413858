"""A DICOM chest study and a mammogram through the real services, then what the gateway makes
of them for readers and systems: the display image (windowed from the file, rendered once and
stored encrypted beside the original), the thumbnail, the original as a download only, the PDF
report (its text read back with pypdf: the patient's name as entered, the result in the
reader's words, the operating point for doctors only, the doctor's reply, the screening-aid
statement, the images) and the FHIR R4B DiagnosticReport (validated with fhir.resources)."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from PIL import Image

from gateway import wording
from tests.bc_service.images import chest_xray, mammogram
from tests.gateway.conftest import (
    Api,
    doctor_login,
    gateway_env,
    run_gateway,
    signup_login,
    wait_status,
)
from tests.imagegen import dicom_bytes
from tests.procs import REPO, Service

PATIENT_NAME = "Zoë Łukasiewicz-Núñez"
REPORTS = REPO / "tests" / "artifacts" / "reports"  # the PDFs of the last run, to look at


def keep(name: str, data: bytes) -> None:
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / name).write_bytes(data)


def chest_dicom() -> bytes:
    """A real NIH chest film as the DX unit sends it: 12-bit MONOCHROME1 with a window."""
    raw = chest_xray()
    if raw is None:
        pytest.skip("real images absent: ../shared/data/nih-cxr14 is needed")
    gray = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_GRAYSCALE)
    twelve = (4095 - gray.astype(np.uint16) * 16).astype(np.uint16)  # inverted: MONOCHROME1
    return dicom_bytes(
        twelve,
        photometric="MONOCHROME1",
        bits_stored=12,
        window=(2048, 4096),
        modality="DX",
        extra={"BodyPartExamined": "CHEST", "ViewPosition": "PA"},
    )


def pdf_text(data: bytes) -> tuple[str, int]:
    """The text of a PDF and how many images it draws."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    return " ".join(text.split()), sum(len(page.images) for page in reader.pages)


@pytest.fixture(scope="module")
def world(upstreams: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("exports")
    db = f"sqlite+aiosqlite:///{tmp / 'gw.db'}"
    env = gateway_env(tmp, db, upstreams["tb"], upstreams["bc"])
    with run_gateway(env, tmp) as gw:
        anon = Api(gw.url)
        body = {"full_name": PATIENT_NAME}
        r = anon.post(
            "/v1/auth/signup",
            json={"email": "zoe@example.org", "password": "s3cure-password", "role": "patient"}
            | body,
        )
        assert r.status_code == 201, r.text
        login = anon.post(
            "/v1/auth/login", json={"email": "zoe@example.org", "password": "s3cure-password"}
        ).json()
        p = anon.as_token(login["access_token"])
        doctor = doctor_login(anon, "doc@example.org", "LIC-9", verified_in=db)
        d = anon.as_token(doctor["access_token"])
        other = anon.as_token(signup_login(anon, "other@example.org")["access_token"])
        dcm = chest_dicom()
        r = p.post("/v1/studies/chest", files={"file": ("x.dcm", dcm, "application/dicom")})
        assert r.status_code == 201, r.text
        chest = r.json()
        cons = p.post(
            "/v1/consultations",
            json={"study_id": chest["id"], "doctor_id": doctor["user"]["id"], "question": "?"},
        ).json()
        reply = "Seen: a follow-up film in six weeks, nothing urgent."
        assert d.post(f"/v1/consultations/{cons['id']}/reply", json={"answer": reply}).is_success
        yield {
            "p": p,
            "d": d,
            "other": other,
            "chest": chest,
            "dcm": dcm,
            "reply": reply,
            "tmp": tmp,
        }


def _png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def test_dicom_display_image_rendered_once_and_stored_encrypted(world: Any) -> None:
    p, chest, tmp = world["p"], world["chest"], world["tmp"]
    image = chest["images"][0]
    assert image["media_type"] == "application/dicom"
    assert chest["thumbnail_url"] == image["thumbnail_url"]
    r = p.get(image["display_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    px = _png(r.content)
    score_map = chest["chest_result"]["score_map"]
    side = max(score_map["image_width"], score_map["image_height"])
    assert max(px.shape) == min(1024, side)  # the overlays' display scale
    assert px.shape[1] / px.shape[0] == pytest.approx(
        score_map["image_width"] / score_map["image_height"], rel=0.01
    )
    # MONOCHROME1 inverted back: the lungs are darker than the mediastinum, the film not black.
    h, w = px.shape
    assert 40 < px.mean() < 215
    assert (
        px[h // 3 : 2 * h // 3, w // 5 : w // 3].mean()
        < px[h // 3 : 2 * h // 3, 9 * w // 20 : 11 * w // 20].mean()
    )
    lung = p.get(image["display_url"], params={"preset": "lung"})
    assert lung.status_code == 200 and lung.content != r.content
    assert p.get(image["display_url"], params={"preset": "bone"}).status_code == 422

    # Rendered once: the same bytes again, one stored row per rendering, the blob encrypted.
    assert p.get(image["display_url"]).content == r.content
    con = sqlite3.connect(tmp / "gw.db")
    rows = con.execute(
        "SELECT role, name, blob_key FROM study_files WHERE study_id = ? ORDER BY role, name",
        (chest["id"],),
    ).fetchall()
    displays = [row for row in rows if row[0] == "display"]
    assert [n for _, n, _ in displays] == [f"{image['id']}.file", f"{image['id']}.lung"]
    key = displays[0][2]
    stored = (tmp / "images" / key[:2] / key[2:4] / key).read_bytes()
    assert stored.startswith(b"IRMIENC1") and b"PNG" not in stored[:64]


def test_thumbnail_is_small_and_the_original_only_a_download(world: Any) -> None:
    p, chest = world["p"], world["chest"]
    image = chest["images"][0]
    t = p.get(image["thumbnail_url"])
    assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg"
    assert max(_png(t.content).shape[:2]) == 160 and len(t.content) < 20_000
    listed = p.get("/v1/studies").json()["items"][0]
    assert listed["thumbnail_url"] == image["thumbnail_url"]
    o = p.get(image["url"])
    assert o.content == world["dcm"]
    assert o.headers["content-disposition"].startswith("attachment;")
    assert o.headers["content-disposition"].endswith('.dcm"')


def test_other_patients_get_404_for_every_new_route(world: Any) -> None:
    chest, other = world["chest"], world["other"]
    image = chest["images"][0]
    for url in (
        image["display_url"],
        image["thumbnail_url"],
        f"/v1/studies/{chest['id']}/report",
        f"/v1/studies/{chest['id']}/fhir",
    ):
        r = other.get(url)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", url
    assert world["p"].get(f"/v1/studies/{chest['id']}/images/nope/display").status_code == 404


def test_pdf_report_for_the_patient(world: Any) -> None:
    p, chest = world["p"], world["chest"]
    r = p.get(f"/v1/studies/{chest['id']}/report", params={"download": "true"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"].startswith("attachment;")
    keep("chest-patient.pdf", r.content)
    text, images = pdf_text(r.content)
    category = chest["chest_result"]["effective"]["category"]
    assert PATIENT_NAME in text
    assert wording.headline(category, "patient") in text
    assert " ".join(wording.explanation(category, "chest", "patient").split()) in text
    assert world["reply"] in text
    assert wording.SCREENING_AID in text
    assert wording.LOOKED["patient"] in text
    for model in chest["chest_result"]["models"]:
        assert f"{model['name']} version {model['version']}" in text
        assert model["sha256"] not in text  # patients have no use for the hash
    # Patients never read a score, a probability or the operating point's figures.
    for word in ("Sensitivity", "Specificity", "/ 100", "Abnormal", "Normal"):
        assert word not in text, word
    assert images == 2  # the film with and without the overlay
    inline = p.get(f"/v1/studies/{chest['id']}/report")
    assert inline.headers["content-disposition"].startswith("inline;")


def test_pdf_report_for_the_doctor(world: Any) -> None:
    d, chest = world["d"], world["chest"]
    r = d.get(f"/v1/studies/{chest['id']}/report")
    assert r.status_code == 200, r.text
    keep("chest-doctor.pdf", r.content)
    text, _ = pdf_text(r.content)
    result = chest["chest_result"]
    e = result["effective"]
    assert PATIENT_NAME in text and wording.headline(e["category"], "doctor") in text
    assert f"{result['score']:.1f} / 100" in text
    point = e["operating_point"]
    sens = point["sensitivity"]
    assert f"Sensitivity: {sens['value'] * 100:.1f}% (95% CI" in text
    assert f"n = {sens['n']} abnormal films" in text
    assert f"Specificity: {point['specificity']['value'] * 100:.1f}%" in text
    assert result["models"][0]["sha256"] in text.replace(" ", "")
    assert world["reply"] in text and wording.LOOKED["doctor"] in text


def test_fhir_diagnostic_report(world: Any) -> None:
    p, d, chest = world["p"], world["d"], world["chest"]
    r = d.get(f"/v1/studies/{chest['id']}/fhir")
    assert r.status_code == 200 and r.headers["content-type"] == "application/fhir+json"
    report = DiagnosticReport.model_validate_json(r.content)
    assert report.status == "final" and report.id == chest["id"]
    assert report.subject.display == PATIENT_NAME
    obs = {o.id: o for o in report.contained}
    assert {"category", "score", "operating-point", "model-0"} <= set(obs)
    assert [ref.reference for ref in report.result] == [f"#{k}" for k in obs]
    e = chest["chest_result"]["effective"]
    assert obs["category"].valueCodeableConcept.coding[0].code == e["category"]
    assert float(obs["score"].valueQuantity.value) == pytest.approx(
        chest["chest_result"]["score"], abs=1e-3
    )
    op = obs["operating-point"]
    assert float(op.valueQuantity.value) == pytest.approx(e["score_threshold"], abs=1e-3)
    parts = {c.code.coding[0].code: c for c in op.component}
    assert float(parts["sensitivity"].valueQuantity.value) == pytest.approx(
        e["operating_point"]["sensitivity"]["value"], abs=1e-4
    )
    model = chest["chest_result"]["models"][0]
    assert obs["model-0"].valueString == f"{model['name']} {model['version']}"
    assert "not a diagnosis" in report.conclusion
    # The patient's own copy follows the patients' rules: no score, no operating point.
    mine = DiagnosticReport.model_validate_json(p.get(f"/v1/studies/{chest['id']}/fhir").content)
    assert {o.id for o in mine.contained} == {
        "category",
        *(f"model-{i}" for i in range(len(chest["chest_result"]["models"]))),
    }
    assert wording.headline(e["category"], "patient") in mine.conclusion


def test_mammogram_report_fhir_and_display(world: Any) -> None:
    p = world["p"]
    r = p.post(
        "/v1/studies/mammography",
        files=[
            ("L-MLO", ("a.png", mammogram(), "image/png")),
            ("R-MLO", ("b.png", mammogram(right=True), "image/png")),
        ],
    )
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    study = wait_status(p, f"/v1/studies/{sid}", limit_s=240)
    assert study["status"] == "succeeded", study
    for image in study["images"]:
        shown = p.get(image["display_url"], params={"preset": "mammography"})
        assert shown.status_code == 200 and shown.content.startswith(b"\x89PNG")
    pdf = p.get(f"/v1/studies/{sid}/report").content
    keep("mammography-patient.pdf", pdf)
    text, images = pdf_text(pdf)
    result = study["mammography_result"]
    assert "Right breast" in text and "Left breast" in text
    assert wording.headline(result["category"], "patient") in text
    assert images == 4  # two views, each with and without its overlay
    fhir = DiagnosticReport.model_validate_json(p.get(f"/v1/studies/{sid}/fhir").content)
    sites = sorted(o.bodySite.text for o in fhir.contained if o.bodySite is not None)
    assert sites == ["Left breast", "Right breast"]


def test_report_conflicts_until_the_study_succeeds(
    fakes: dict[str, Service], tmp_path: Path
) -> None:
    """A study still running (a stand-in bc_service that never answers) has no report nor
    FHIR document yet: 409 in the error envelope."""
    url = fakes["ok"].url
    env = gateway_env(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}", url, url)
    with run_gateway(env, tmp_path) as gw:
        p = Api(gw.url).as_token(signup_login(Api(gw.url), "x@example.org")["access_token"])
        hang = mammogram() + b"FAKE:hang"
        r = p.post("/v1/studies/mammography", files=[("L-MLO", ("a.png", hang, "image/png"))])
        assert r.status_code == 202, r.text
        sid = r.json()["id"]
        for route in ("report", "fhir"):
            got = p.get(f"/v1/studies/{sid}/{route}")
            assert got.status_code == 409 and got.json()["error"]["code"] == "conflict", got.text
