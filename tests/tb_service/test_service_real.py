"""The committed chest models through `python -m tb_service` over HTTP, on real images.

Skipped with a reason when the models are not committed yet or ../shared/data is absent.
Real images come from the `test` splits only. Correctness figures live in the model reports;
here we check the service serves the real models end to end and behaves sensibly.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.settings import default_data_dir
from tb_service.lungseg import committed_seg_model
from tb_service.settings import MODELS_DIR
from tests.imagegen import pydicom_test_file
from tests.procs import Service, running
from tests.tb_service.svc_helpers import b64

DATA = default_data_dir()
REAL_MODELS = ("chest-gate", "chest-abnormality")
# Every model a prediction ran through; the orientation model when it is committed.
USED_MODELS = [*REAL_MODELS] + (
    ["chest-orientation"] if any((MODELS_DIR / "chest-orientation").glob("*/model.onnx")) else []
)

pytestmark = [
    pytest.mark.skipif(
        not all(any((MODELS_DIR / name).glob("*/model.onnx")) for name in REAL_MODELS),
        reason=f"real chest models not committed under {MODELS_DIR} yet",
    ),
    pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} absent"),
]


def _test_split(dataset: str, prefix: str, n: int) -> list[Path]:
    splits = DATA / dataset / "splits.csv"
    if not splits.exists():
        return []
    with splits.open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    paths = sorted(DATA / dataset / r["path"] for r in rows if r["path"].startswith(prefix))
    return [p for p in paths if p.exists()][:n]


def _mammograms(n: int) -> list[Path]:
    return sorted((DATA / "mini-mias").glob("mdb*.png"))[:n]


@pytest.fixture(scope="module")
def svc() -> Iterator[Service]:
    env = {"IRMI_TB_USE_GPU": "false", "IRMI_TB_MAX_WAIT_MS": "20"}
    with running("tb_service", env, timeout=120) as s:
        yield s


def _predict(svc: Service, path: Path) -> httpx.Response:
    files = {"file": (path.name, path.read_bytes(), "application/octet-stream")}
    return httpx.post(svc.url + "/v1/predict", files=files, timeout=120)


def test_real_models_are_served(svc: Service) -> None:
    models = {m["name"]: m for m in httpx.get(svc.url + "/v2/models").json()["models"]}
    assert set(REAL_MODELS) <= set(models)
    for name in REAL_MODELS:
        card = httpx.get(svc.url + f"/v2/models/{name}").json()
        version_dir = MODELS_DIR / name / card["version"]
        on_disk = json.loads((version_dir / "card.json").read_text())
        assert card["sha256"] == on_disk["sha256"]
        assert card["provider"] in {"CPUExecutionProvider", "CUDAExecutionProvider"}


def _models_run(svc: Service) -> list[str]:
    """The models a chest prediction runs through: the gate, the screen and, for a screen
    trained behind the segmentation crop (chest-abnormality/2), lung-seg."""
    card = httpx.get(svc.url + "/v2/models/chest-abnormality").json()
    stages = {s["stage"] for s in card["preprocessing"]["steps"]}
    seg = ["lung-seg"] if "lung_seg_crop" in stages else []
    return [*REAL_MODELS, *seg, *USED_MODELS[len(REAL_MODELS) :]]


def test_real_chest_xrays_are_screened(svc: Service) -> None:
    images = (
        _test_split("nih-cxr14", "no_finding/", 2)
        + _test_split("nih-cxr14", "pneumonia/", 2)
        + _test_split("kermany-pediatric", "normal/", 2)
        + _test_split("kermany-pediatric", "bacterial_pneumonia/", 1)
        + _test_split("kermany-pediatric", "viral_pneumonia/", 1)
    )
    if len(images) < 4:
        pytest.skip("chest X-ray test splits not found under the data folder")
    passed = 0
    for path in images:
        r = _predict(svc, path)
        assert r.status_code in (200, 422), r.text
        if r.status_code == 422:
            assert r.json()["error"]["code"] == "not_a_chest_xray"
            continue
        passed += 1
        body = r.json()
        p = body["probabilities"]
        assert abs(p["normal"] + p["abnormal"] - 1) < 1e-4
        assert body["label"] == ("abnormal" if p["abnormal"] >= body["threshold"] else "normal")
        assert [m["name"] for m in body["models"]] == _models_run(svc)
        point = body["operating_point"]
        screen = next(m for m in body["models"] if m["name"] == "chest-abnormality")
        assert point["source"] == "card" and point["model"] == screen
        assert point["score_threshold"] == pytest.approx(100 * body["threshold"], abs=1e-3)
        if body["category"] == "review_recommended":
            assert body["findings"][0]["name"] == "pneumonia"
        else:
            assert body["findings"] == []
        if not body["reliability"]["outside_population"]:
            flagged = body["score"] >= point["score_threshold"]
            assert body["category"] == ("review_recommended" if flagged else "no_finding_flagged")
        else:
            assert body["category"] == "outside_population"
        from PIL import Image

        with Image.open(path) as img:
            size = img.size
        smap = body["score_map"]
        assert (smap["image_width"], smap["image_height"]) == size
        assert smap["box"] == body["crop_box"] and len(smap["values"]) == 8
        assert body["heatmap"] is None
    # The gate must let real chest X-rays through (allowing one miss for a noisy film).
    assert passed >= len(images) - 1, f"gate refused {len(images) - passed} of {len(images)}"


def test_mammograms_and_ct_are_not_chest_xrays(svc: Service) -> None:
    mammos = _mammograms(3)
    if not mammos:
        pytest.skip("mini-mias not found under the data folder")
    refused = sum(_predict(svc, p).status_code == 422 for p in mammos)
    assert refused >= len(mammos) - 1
    for name in ("CT_small.dcm", "MR_small.dcm"):
        r = httpx.post(
            svc.url + "/v1/predict",
            files={"file": (name, pydicom_test_file(name), "application/dicom")},
            timeout=60,
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] in {"not_a_chest_xray", "invalid_image"}


def test_real_image_through_legacy_endpoint_and_batch(svc: Service) -> None:
    images = _test_split("nih-cxr14", "pneumonia/", 2)
    if not images:
        pytest.skip("nih-cxr14 test split not found")
    r = httpx.post(svc.url + "/api/tb", json={"image": b64(images[0].read_bytes())}, timeout=60)
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        pred = r.json()["prediction"]
        assert set(pred) == {"abnormal", "normal"}
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in images]
    batch = httpx.post(svc.url + "/v1/predict/batch", files=files, timeout=120)
    assert batch.status_code == 200
    assert [x["filename"] for x in batch.json()["results"]] == [p.name for p in images]


def test_service_matches_the_bare_model(svc: Service) -> None:
    """No train/serve skew inside the service: its probabilities equal ONNX Runtime's on the
    shared preprocessing of the same file."""
    from shared.imaging import decode_image
    from shared.model import OnnxModel
    from tb_service import preprocess

    images = _test_split("kermany-pediatric", "viral_pneumonia/", 1) + _test_split(
        "nih-cxr14", "no_finding/", 1
    )
    if not images:
        pytest.skip("test splits not found")
    gate = OnnxModel(MODELS_DIR / "chest-gate" / "1", use_gpu=False)
    served = httpx.get(svc.url + "/v2/models/chest-abnormality").json()["version"]
    abn = OnnxModel(MODELS_DIR / "chest-abnormality" / served, use_gpu=False)
    gate.load()
    abn.load()
    chest_pipe = preprocess.chest_pipeline_for(
        abn.card, preprocess.INPUT_SIZE, committed_seg_model()
    )
    for path in images:
        decoded = decode_image(path.read_bytes())
        g = preprocess.gate_pipeline()(decoded)
        c = chest_pipe(decoded)
        p_chest = float(gate.run_single_input(g.image[None])["probs"][0, 1])
        p_abn = float(abn.run_single_input(c.image[None])["probs"][0, 1])
        r = _predict(svc, path)
        if r.status_code == 422:
            assert p_chest < r.json()["error"]["details"]["threshold"]
            continue
        body = r.json()
        assert body["validity"]["score"] == pytest.approx(p_chest, abs=1e-5)
        assert body["probabilities"]["abnormal"] == pytest.approx(p_abn, abs=1e-5)
        box = body["crop_box"]
        assert (box["x0"], box["y0"], box["x1"], box["y1"]) == tuple(c.crop_box)
