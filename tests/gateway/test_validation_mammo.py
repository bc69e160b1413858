"""A mammography validation run over real mini-MIAS test films, through the real bc_service
and its committed models: loose files (one of them a DICOM) with a labels CSV, labelled per
breast; each breast's score is the per-breast score bc_service returns for the same film, the
report reads them; "sensitivity 0.90" adopted from the run's one-breast readings reads new
one-breast studies at the site's point with consistent view, breast and exam categories,
both-breast readings stay at the card's point, and rollback restores the card's point."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from shared.settings import default_data_dir
from tests.gateway.conftest import (
    Api,
    admin_api,
    patient_api,
    run_gateway,
    sqlite_gateway_env,
    wait_status,
)
from tests.gateway.test_validation import _follow
from tests.imagegen import dicom_bytes
from tests.procs import REPO, spawn, wait_ready

MIAS = default_data_dir() / "mini-mias"
BC_MODELS = REPO / "bc_service" / "models"
pytestmark = pytest.mark.skipif(not MIAS.is_dir(), reason=f"no mini-mias under {MIAS.parent}")


def _films() -> list[dict[str, str]]:
    split = {r["path"]: r["split"] for r in csv.DictReader((MIAS / "splits.csv").open())}
    rows = [r for r in csv.DictReader((MIAS / "labels.csv").open()) if split[r["path"]] == "test"]
    normal = [r for r in rows if r["label"] == "normal"][:4]
    workup = [r for r in rows if r["label"] != "normal"][:4]
    return [
        {
            "file": r["path"],
            "label": "0" if r["label"] == "normal" else "1",
            "breast": f"{r['patient_id']}-{r['laterality']}",
            "tissue": r["tissue"],
        }
        for r in normal + workup
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("validation-mammo")
    env = {"IRMI_BC_USE_GPU": "false", "IRMI_BC_WORKERS": "1", "IRMI_BC_CPU_WORKERS": "1"}
    if not any((REPO / "bc_service" / "models").glob("*/*/model.onnx")):
        env["IRMI_BC_REQUIRED_MODELS"] = "[]"
    bc = spawn("bc_service", env, log_dir=tmp)
    try:
        wait_ready(bc, timeout=240)
        gw_env = sqlite_gateway_env(tmp, bc.url)
        with run_gateway(gw_env, tmp) as gw:
            admin = admin_api(Api(gw.url), gw_env["IRMI_GATEWAY_DATABASE_URL"])
            yield {"gw": gw, "bc": bc, "admin": admin, "tmp": tmp}
    finally:
        bc.stop()


def _breast_score(bc_url: str, name: str, data: bytes, media_type: str) -> float:
    """The per-breast score bc_service returns for an exam of this one film."""
    with httpx.Client(base_url=bc_url, timeout=300) as c:
        r = c.post("/v1/exams", files=[("files", (name, data, media_type))])
        assert r.status_code == 202, r.text
        url = r.json()["status_url"]
        while (exam := c.get(url).json())["status"] not in ("succeeded", "failed"):
            time.sleep(0.1)
    assert exam["status"] == "succeeded", exam
    return float(max(b["score"] for b in exam["result"]["breasts"]))


@pytest.fixture(scope="module")
def mias_run(world: dict[str, Any]) -> dict[str, Any]:
    """A finished run over the mini-MIAS sample (one film as a DICOM), each film one breast."""
    admin: Api = world["admin"]
    rows = _films()
    files: dict[str, tuple[bytes, str]] = {
        r["file"]: ((MIAS / r["file"]).read_bytes(), "image/png") for r in rows
    }
    # one film as a DICOM mammogram (MG), as a PACS would export it
    first = rows[0]["file"]
    pixels = np.asarray(Image.open(MIAS / first).convert("L"))
    dcm = first.replace(".png", ".dcm")
    files[dcm] = (dicom_bytes(pixels, modality="MG"), "application/dicom")
    del files[first]
    rows[0]["file"] = dcm

    run = admin.post(
        "/v1/admin/validation-runs",
        json={"name": "mias", "modality": "mammography", "target": "workup"},
    ).json()
    base = f"/v1/admin/validation-runs/{run['id']}"
    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    parts: list[tuple[str, tuple[str, bytes, str]]] = [
        ("labels", ("labels.csv", text.getvalue().encode(), "text/csv"))
    ]
    parts += [("files", (name, data, mt)) for name, (data, mt) in files.items()]
    r = admin.post(f"{base}/uploads", files=parts)
    assert r.status_code == 201, r.text
    assert admin.post(f"{base}/start").status_code == 202
    done = _follow(admin, run)[-1]
    assert done["status"] == "done" and done["scored"] + done["failed"] == len(rows)
    return {"run": run, "base": base, "rows": rows, "files": files}


def test_a_mammography_run_reads_the_per_breast_score(
    world: dict[str, Any], mias_run: dict[str, Any]
) -> None:
    admin: Api = world["admin"]
    base, rows, files = mias_run["base"], mias_run["rows"], mias_run["files"]
    scores = {
        s["file"]: s for s in csv.DictReader(io.StringIO(admin.get(f"{base}/scores.csv").text))
    }
    assert set(scores) == {r["file"] for r in rows}
    scored = [s for s in scores.values() if s["status"] == "scored"]
    assert len(scored) == len(rows), [s["error_code"] for s in scores.values()]
    for s in scored:
        data, mt = files[s["file"]]
        want = _breast_score(world["bc"].url, s["file"], data, mt)
        assert abs(float(s["score"]) - want) <= 1e-5
    report = admin.get(f"{base}/report").json()
    assert report["overall"]["n"] == len(scored) and report["modality"] == "mammography"
    # each unit is one breast's film, read from that breast alone: at the one-breast point
    assert report["current_point"]["source"] == "card"
    card = json.loads((BC_MODELS / "mammo-view" / "2" / "card.json").read_text())
    assert report["current_point"]["model"]["name"] == "mammo-view"
    assert report["current_point"]["model"]["version"] == card["version"]
    assert "tissue" in report["subgroups"]


def _study(patient: Api, films: list[tuple[str, str]]) -> dict[str, Any]:
    """A mammography study of mini-MIAS films (tag, file), once it has its result."""
    parts = [(tag, (name, (MIAS / name).read_bytes(), "image/png")) for tag, name in films]
    r = patient.post("/v1/studies/mammography", files=parts)
    assert r.status_code == 202, r.text
    study = wait_status(patient, r.json()["study_url"], limit_s=300)
    assert study["status"] == "succeeded", study
    out: dict[str, Any] = study["mammography_result"]
    return out


def _consistent(res: dict[str, Any]) -> None:
    """Views follow their point; a breast is flagged iff any of its views, the exam iff any
    breast (outside_population wins)."""

    def fold(cats: list[str]) -> str:
        if "outside_population" in cats:
            return "outside_population"
        return "review_recommended" if "review_recommended" in cats else "no_finding_flagged"

    for v in res["views"]:
        alone = v["comparison"] == "unilateral"
        point = res["unilateral_operating_point" if alone else "operating_point"]
        assert v["score_threshold"] == point["score_threshold"]
        if v["category"] != "outside_population":
            flagged = v["score"] >= point["score_threshold"]
            assert v["category"] == ("review_recommended" if flagged else "no_finding_flagged")
    views = {v["view_id"]: v for v in res["views"]}
    for b in res["breasts"]:
        assert b["category"] == fold([views[i]["category"] for i in b["views"]])
    assert res["category"] == fold([b["category"] for b in res["breasts"]])


def test_a_site_point_from_mammography_and_its_rollback(
    world: dict[str, Any], mias_run: dict[str, Any]
) -> None:
    admin: Api = world["admin"]
    base, rows = mias_run["base"], mias_run["rows"]
    scores = list(csv.DictReader(io.StringIO(admin.get(f"{base}/scores.csv").text)))
    y = np.asarray([int(r["label"]) for r in rows])
    by_file = {s["file"]: float(s["score"]) for s in scores}
    s100 = np.asarray([by_file[r["file"]] for r in rows])

    choice = {"target_sensitivity": 0.9, "recalibration": "platt"}
    preview = admin.post(f"{base}/site-point/preview", json=choice)
    assert preview.status_code == 200, preview.text
    point = preview.json()["point"]
    thr = point["score_threshold"]
    assert ((s100 >= thr) & (y == 1)).sum() / (y == 1).sum() >= 0.90
    assert (point["sensitivity"]["n"], point["specificity"]["n"]) == (4, 4)
    assert point["source"] == "site" and point["model"]["name"] == "mammo-view"
    assert "from one breast alone" in point["measured_on"]
    assert preview.json()["choice"]["comparison"] == "unilateral"
    assert preview.json()["calibration"]["method"] == "platt"
    adopted = admin.post(f"{base}/site-point", json=choice)
    assert adopted.status_code == 201, adopted.text
    v1 = adopted.json()
    assert v1["version"] == 1 and v1["point"] == point
    listing = admin.get("/v1/admin/site-points", params={"modality": "mammography"}).json()
    assert listing["active"]["id"] == v1["id"]
    assert admin.get("/v1/admin/site-points").json()["active"] is None  # chest: untouched

    # A one-breast study is read at the site's point; its categories agree throughout.
    patient = patient_api(world["gw"].url, "mammo-site@example.org")
    positive = next(r["file"] for r in rows if r["label"] == "1" and r["file"].endswith(".png"))
    res = _study(patient, [("files", positive)])
    assert res["unilateral_operating_point"] == point
    assert all(v["comparison"] == "unilateral" for v in res["views"])
    _consistent(res)
    assert any("this site's operating point v1" in n for n in res["notes"])
    key = patient.post("/v1/api-keys", json={"name": "pacs", "scopes": ["predict"]}).json()
    integrator = Api(world["gw"].url, key=key["key"])
    data = (MIAS / positive).read_bytes()
    r = integrator.post("/v1/predict/mammogram", files=[("files", (positive, data, "image/png"))])
    assert r.status_code == 200, r.text
    assert r.json()["result"]["unilateral_operating_point"] == point
    assert r.json()["result"]["category"] == res["category"]

    # Both breasts of one woman: read with each other, so at the card's both-breast point.
    pair = _pair()
    res2 = _study(patient, [("L-MLO", pair["L"]), ("R-MLO", pair["R"])])
    assert res2["operating_point"]["source"] == "card"
    assert all(v["comparison"] == "contralateral" for v in res2["views"])
    _consistent(res2)
    assert any("stay at the model card's point" in n for n in res2["notes"])

    # Rolled back: the card's one-breast point again, and no site note.
    r = admin.post("/v1/admin/site-points/rollback", json={"modality": "mammography"})
    assert r.status_code == 200 and r.json()["active"] is None
    res3 = _study(patient, [("files", positive)])
    assert res3["unilateral_operating_point"]["source"] == "card"
    assert not any("site" in n for n in res3["notes"])
    _consistent(res3)
    with sqlite3.connect(world["tmp"] / "gw.db") as db:
        trail = db.execute(
            "SELECT action FROM audit_events WHERE action LIKE 'site_point_%' ORDER BY id"
        ).fetchall()
    assert [a for (a,) in trail] == ["site_point_adopt", "site_point_rollback"]


def _pair() -> dict[str, str]:
    """The left and right MLO films of one test-split woman."""
    split = {r["path"]: r["split"] for r in csv.DictReader((MIAS / "splits.csv").open())}
    rows = [r for r in csv.DictReader((MIAS / "labels.csv").open()) if split[r["path"]] == "test"]
    women: dict[str, dict[str, str]] = {}
    for r in rows:
        women.setdefault(r["patient_id"], {})[r["laterality"]] = r["path"]
    return next(w for w in women.values() if set(w) == {"L", "R"})


def test_csv_rows_of_one_breast_must_agree(world: dict[str, Any]) -> None:
    admin: Api = world["admin"]
    run = admin.post(
        "/v1/admin/validation-runs", json={"name": "x", "modality": "mammography"}
    ).json()
    labels = b"file,label,breast\na.png,1,L\nb.png,0,L\n"
    parts = [("labels", ("l.csv", labels, "text/csv"))]
    parts += [
        ("files", (f"{n}.png", (MIAS / "mdb001.png").read_bytes(), "image/png")) for n in "ab"
    ]
    r = admin.post(f"/v1/admin/validation-runs/{run['id']}/uploads", files=parts)
    assert r.status_code == 422 and r.json()["error"]["details"] == {"row": 2, "field": "label"}
