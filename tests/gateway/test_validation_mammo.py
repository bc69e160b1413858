"""A mammography validation run over real mini-MIAS test films, through the real bc_service
and its committed models: loose files (one of them a DICOM) with a labels CSV, labelled per
breast; each breast's score is the per-breast score bc_service returns for the same film, the
report reads them, and a site point is not offered for mammography (yet)."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from shared.settings import default_data_dir
from tests.gateway.conftest import Api, admin_api, run_gateway, sqlite_gateway_env
from tests.gateway.test_validation import _follow
from tests.imagegen import dicom_bytes
from tests.procs import REPO, spawn, wait_ready

MIAS = default_data_dir() / "mini-mias"
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
            yield {"gw": gw, "bc": bc, "admin": admin}
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


def test_a_mammography_run_reads_the_per_breast_score(world: dict[str, Any]) -> None:
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
    assert report["current_point"] is None or report["current_point"]["source"] == "card"
    assert any("relative suspicion score" in n for n in report["notes"])
    assert "tissue" in report["subgroups"]
    r = admin.post(f"{base}/site-point/preview", json={"target_sensitivity": 0.9})
    assert r.status_code == 409 and r.json()["error"]["details"]["modality"] == "mammography"


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
