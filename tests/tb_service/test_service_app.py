"""tb_service in-process (httpx.ASGITransport) with tiny rigged ONNX models of the real I/O.

The tiny gate says "not a chest X-ray" for uniform images; the tiny abnormality model calls an
image abnormal when its left half is brighter (see tests/onnxgen.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tb_service.routes import BATCH_SIZE_HEADER
from tests.imagegen import (
    dicom_bytes,
    gradient,
    jpeg_bytes,
    png_bomb,
    png_bytes,
    pydicom_test_file,
)
from tests.onnxgen import chest_model_folders
from tests.tb_service.svc_helpers import (
    b64,
    blank_png,
    chest_like,
    chest_png,
    client_for,
    decode_heatmap,
    histogram,
    settings_for,
)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chest_model_folders(tmp_path_factory.mktemp("chest-models"))


@pytest.fixture(scope="module")
def always_abnormal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chest_model_folders(tmp_path_factory.mktemp("chest-abn"), abnormal_threshold=0.0)


@pytest.fixture
async def client(models_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(settings_for(models_dir, max_wait_ms=2)) as (_, c):
        yield c


def _file(data: bytes, name: str = "x.png", ctype: str = "image/png") -> dict[str, object]:
    return {"file": (name, data, ctype)}


def _check_prediction(body: dict[str, object], size: tuple[int, int]) -> None:
    p = body["probabilities"]
    assert isinstance(p, dict)
    assert abs(p["normal"] + p["abnormal"] - 1.0) < 1e-5
    assert body["score"] == pytest.approx(100 * p["abnormal"], abs=0.01)
    assert body["label"] == ("abnormal" if p["abnormal"] >= body["threshold"] else "normal")
    point = body["operating_point"]
    assert isinstance(point, dict) and point["source"] == "card"
    assert point["score_threshold"] == pytest.approx(100 * body["threshold"], abs=1e-3)
    assert point["model"] == body["models"][1]
    outside = body["reliability"]["outside_population"]
    assert body["category"] == (
        "outside_population"
        if outside
        else "review_recommended"
        if body["score"] >= point["score_threshold"]
        else "no_finding_flagged"
    )
    assert bool(body["findings"]) == (body["category"] == "review_recommended")
    assert body["heatmap"] is None  # deprecated: only when asked for
    smap = body["score_map"]
    assert smap["box"] == body["crop_box"]
    assert (smap["image_width"], smap["image_height"]) == size
    values = np.asarray(smap["values"])
    assert values.shape == (8, 8) and values.min() >= 0 and values.max() == 1.0
    validity = body["validity"]
    assert isinstance(validity, dict) and validity["passed"] is True
    assert validity["score"] >= validity["threshold"]
    box = body["crop_box"]
    assert isinstance(box, dict)
    w, h = size
    assert 0 <= box["x0"] < box["x1"] <= w and 0 <= box["y0"] < box["y1"] <= h
    models = body["models"]
    assert isinstance(models, list)
    assert [m["name"] for m in models] == ["chest-gate", "chest-abnormality"]
    assert all(len(m["sha256"]) == 64 for m in models)
    timings = body["timings_ms"]
    assert isinstance(timings, dict)
    for stage in ("decode", "gate", "inference", "batch_wait", "total"):
        assert stage in timings, stage
    assert any(k.startswith("preprocess.") for k in timings)
    assert any(k.startswith("gate.") for k in timings)


async def test_predict_png_full_response(client: httpx.AsyncClient, models_dir: Path) -> None:
    r = await client.post("/v1/predict", files=_file(chest_png(320, 280)))
    assert r.status_code == 200, r.text
    body = r.json()
    _check_prediction(body, (280, 320))
    assert r.headers[BATCH_SIZE_HEADER] == "1"
    card = json.loads((models_dir / "chest-abnormality" / "1" / "card.json").read_text())
    assert body["models"][1]["sha256"] == card["sha256"]
    assert body["threshold"] == 0.5 and body["validity"]["threshold"] == 0.5
    assert body["operating_point"]["sensitivity"] == card["operating_point"]["sensitivity"]
    assert body["operating_point"]["measured_on"] == card["operating_point"]["measured_on"]
    assert "heatmap" not in body["timings_ms"]
    # The deprecated full-size heatmap, for a caller who asks: RGBA PNG of the original's
    # size, transparent outside the crop box.
    r = await client.post("/v1/predict?heatmap=true", files=_file(chest_png(320, 280)))
    body = r.json()
    hm = body["heatmap"]
    assert (hm["width"], hm["height"]) == (280, 320)
    rgba = decode_heatmap(hm)
    assert rgba.shape == (320, 280, 4)
    box = body["crop_box"]
    inside = rgba[box["y0"] : box["y1"], box["x0"] : box["x1"], 3]
    assert inside.max() > 0
    outside = rgba[:, :, 3].copy()
    outside[box["y0"] : box["y1"], box["x0"] : box["x1"]] = 0
    assert outside.max() == 0
    assert "heatmap" in body["timings_ms"]


async def test_abnormal_gives_pneumonia_subtypes(always_abnormal_dir: Path) -> None:
    async with client_for(settings_for(always_abnormal_dir, max_wait_ms=1)) as (_, c):
        r = await c.post("/v1/predict", files=_file(chest_png()))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] == "abnormal" and body["threshold"] == 0.0
    (finding,) = body["findings"]
    assert finding["name"] == "pneumonia"
    assert finding["probability"] == body["probabilities"]["abnormal"]
    assert set(finding["subtypes"]) == {"bacterial", "viral"}
    assert sum(finding["subtypes"].values()) == pytest.approx(1.0, abs=1e-5)


async def test_left_bright_vs_right_bright(client: httpx.AsyncClient) -> None:
    """The rigged model's direction survives the real preprocessing end to end."""
    img = chest_like(300, 300)
    left = img.copy()
    left[:, :150] = np.clip(left[:, :150].astype(int) + 60, 0, 255).astype(np.uint8)
    right = img.copy()
    right[:, 150:] = np.clip(right[:, 150:].astype(int) + 60, 0, 255).astype(np.uint8)
    a = (await client.post("/v1/predict", files=_file(png_bytes(left)))).json()
    b = (await client.post("/v1/predict", files=_file(png_bytes(right)))).json()
    assert a["probabilities"]["abnormal"] > b["probabilities"]["abnormal"]


async def test_jpeg_and_dicom(client: httpx.AsyncClient) -> None:
    img = chest_like(256, 240)
    r = await client.post("/v1/predict", files=_file(jpeg_bytes(img), "x.jpg", "image/jpeg"))
    assert r.status_code == 200, r.text
    _check_prediction(r.json(), (240, 256))
    dcm = dicom_bytes(chest_like(256, 240, dtype=np.uint16), bits_stored=12)
    r = await client.post("/v1/predict", files=_file(dcm, "x.dcm", "application/dicom"))
    assert r.status_code == 200, r.text
    _check_prediction(r.json(), (240, 256))
    # a colour PNG is accepted too (converted to gray)
    rgb = np.dstack([chest_like(200, 200)] * 3)
    assert (await client.post("/v1/predict", files=_file(png_bytes(rgb)))).status_code == 200


async def test_heatmap_can_be_switched_off(client: httpx.AsyncClient, models_dir: Path) -> None:
    r = await client.post("/v1/predict?heatmap=false", files=_file(chest_png()))
    assert r.status_code == 200 and r.json()["heatmap"] is None
    assert "heatmap" not in r.json()["timings_ms"]
    async with client_for(settings_for(models_dir, heatmap=False)) as (_, c):
        r = await c.post("/v1/predict?heatmap=true", files=_file(chest_png()))
        assert r.status_code == 200 and r.json()["heatmap"] is None
        assert r.json()["score_map"] is not None  # the low-resolution map always comes


async def test_not_a_chest_xray(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/predict", files=_file(blank_png()))
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "not_a_chest_xray"
    assert set(err["details"]) == {"score", "threshold"}
    assert err["details"]["score"] < err["details"]["threshold"] == 0.5
    metrics = (await client.get("/metrics")).text
    assert 'irmi_errors_total{code="not_a_chest_xray",service="tb_service"} 1.0' in metrics


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 422, "invalid_image"),
        (chest_png()[:300], 422, "invalid_image"),  # truncated PNG
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", 415, "unsupported_format"),
        (b"GIF89a\x10\x00\x10\x00\x80\x00\x00" + b"\x00" * 40, 415, "unsupported_format"),
        (png_bomb(), 413, "image_too_large"),
        (dicom_bytes(None), 422, "invalid_image"),  # DICOM without pixel data
        (b"hello, world", 415, "unsupported_format"),
        (png_bytes(gradient(8, 8)), 422, "invalid_image"),  # too small to be a radiograph
    ],
    ids=["empty", "truncated", "pdf", "gif", "bomb", "dicom-no-pixels", "text", "tiny"],
)
async def test_bad_files(client: httpx.AsyncClient, data: bytes, status: int, code: str) -> None:
    r = await client.post("/v1/predict", files=_file(data))
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


async def test_non_chest_dicom_files_never_500(client: httpx.AsyncClient) -> None:
    for name in ("CT_small.dcm", "MR_small.dcm"):
        r = await client.post("/v1/predict", files=_file(pydicom_test_file(name), name))
        assert r.status_code < 500, r.text


async def test_wrong_field_and_wrong_body(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/predict", files={"image": ("x.png", chest_png(), "image/png")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    r = await client.post("/v1/predict", content=b"not multipart")
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    r = await client.post("/v1/predict", json={"file": "x"})
    assert r.status_code == 422


async def test_upload_size_limit(models_dir: Path) -> None:
    s = settings_for(models_dir, max_upload_bytes=20_000)
    big = png_bytes(np.random.default_rng(1).integers(0, 255, (300, 300), dtype=np.uint8))
    assert 20_000 < len(big) < 1024 * 1024
    async with client_for(s) as (_, c):
        # Declared length over the limit: refused before the body is read.
        huge = b"\x89PNG\r\n\x1a\n" + b"\x00" * (2 * 1024 * 1024)
        r = await c.post("/v1/predict", files=_file(huge))
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        # Chunked body (no Content-Length) is counted as it streams in.

        async def chunks() -> AsyncIterator[bytes]:
            yield (
                b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"'
                b"\r\nContent-Type: image/png\r\n\r\n"
            )
            for _ in range(40):
                yield b"\x00" * 65536

        r = await c.post(
            "/v1/predict",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=xyz"},
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        # Within the body limit but over the per-file limit.
        r = await c.post("/v1/predict", files=_file(big))
        assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large"
        # still serving
        r = await c.post("/v1/predict", files=_file(chest_png(100, 100)))
        assert r.status_code == 200, r.text


async def test_batch_endpoint(client: httpx.AsyncClient) -> None:
    files = [
        ("files", ("a.png", chest_png(seed=1), "image/png")),
        ("files", ("b.gif", b"GIF89a" + b"\x00" * 30, "image/gif")),
        ("files", ("c.png", blank_png(), "image/png")),
        ("files", ("d.jpg", jpeg_bytes(chest_like(seed=2)), "image/jpeg")),
    ]
    r = await client.post("/v1/predict/batch", files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["filename"] for x in results] == ["a.png", "b.gif", "c.png", "d.jpg"]
    assert results[0]["prediction"]["label"] in {"normal", "abnormal"}
    assert results[0]["error"] is None
    assert results[1]["prediction"] is None
    assert results[1]["error"]["code"] == "unsupported_format"
    assert results[1]["error"]["status"] == 415
    assert results[2]["error"]["code"] == "not_a_chest_xray"
    assert results[3]["prediction"] is not None


async def test_batch_bounded_and_validated(models_dir: Path) -> None:
    async with client_for(settings_for(models_dir, max_batch_files=2)) as (_, c):
        files = [("files", (f"{i}.png", chest_png(seed=i), "image/png")) for i in range(3)]
        r = await c.post("/v1/predict/batch", files=files)
        assert r.status_code == 413
        err = r.json()["error"]
        assert err["code"] == "payload_too_large" and err["details"]["max_files"] == 2
        r = await c.post("/v1/predict/batch", files=_file(chest_png()))  # wrong field name
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


async def test_legacy_api_tb(client: httpx.AsyncClient) -> None:
    data = chest_png()
    r = await client.post("/api/tb", json={"image": b64(data)})
    assert r.status_code == 200, r.text
    pred = r.json()["prediction"]
    assert set(pred) == {"abnormal", "normal"}
    assert pred["abnormal"] + pred["normal"] == pytest.approx(1.0, abs=1e-5)
    full = (await client.post("/v1/predict", files=_file(data))).json()
    assert pred == full["probabilities"]
    # data: URL, line-wrapped base64, missing padding: all accepted
    r = await client.post("/api/tb", json={"image": "data:image/png;base64," + b64(data)})
    assert r.status_code == 200
    wrapped = "\n".join(b64(data)[i : i + 76] for i in range(0, len(b64(data)), 76))
    assert (await client.post("/api/tb", json={"image": wrapped})).status_code == 200
    assert (await client.post("/api/tb", json={"image": b64(data).rstrip("=")})).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"image": "this is not base64!!"}, 400, "bad_request"),
        ({"image": "@@@@"}, 400, "bad_request"),
        ({"image": ""}, 422, "invalid_image"),
        ({"image": b64(b"GIF89a" + b"\x00" * 30)}, 415, "unsupported_format"),
        ({"image": b64(blank_png())}, 422, "not_a_chest_xray"),
        ({"picture": "abc"}, 422, "validation_error"),
        ({"image": 42}, 422, "validation_error"),
    ],
    ids=["not-b64", "symbols", "empty", "gif", "blank", "wrong-key", "not-a-string"],
)
async def test_legacy_api_tb_errors(
    client: httpx.AsyncClient, body: dict[str, object], status: int, code: str
) -> None:
    r = await client.post("/api/tb", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    r = await client.post(
        "/api/tb", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


async def test_concurrent_requests_share_batches(models_dir: Path) -> None:
    s = settings_for(models_dir, batching="on", max_batch_size=8, max_wait_ms=300, max_queue=32)
    async with client_for(s) as (_, c):
        data = chest_png(200, 200)
        rs = await asyncio.gather(*(c.post("/v1/predict", files=_file(data)) for _ in range(8)))
        assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
        sizes = [int(r.headers[BATCH_SIZE_HEADER]) for r in rs]
        assert max(sizes) > 1
        text = (await c.get("/metrics")).text
        total, count = histogram(text, "irmi_batch_size", 'model="chest"')
        assert count >= 1 and total == 8 and total > count  # fewer runs than requests
        assert "irmi_stage_duration_seconds_count" in text
        for stage in ("decode", "gate", "inference", "preprocess.lung_crop"):
            assert f'stage="{stage}"' in text, stage
        assert 'irmi_queue_depth{queue="chest"' in text


async def test_overload_gives_503_with_retry_after(models_dir: Path) -> None:
    s = settings_for(
        models_dir, max_batch_size=1, max_wait_ms=0, max_queue=1, max_in_flight=2, retry_after_s=3
    )
    async with client_for(s) as (_, c):
        data = chest_png(200, 200)
        rs = await asyncio.gather(*(c.post("/v1/predict", files=_file(data)) for _ in range(16)))
        codes = [r.status_code for r in rs]
        assert 200 in codes and 503 in codes, codes
        assert set(codes) <= {200, 503}
        busy = next(r for r in rs if r.status_code == 503)
        assert busy.headers["retry-after"] == "3"
        assert busy.json()["error"]["code"] == "overloaded"
        # capacity comes back once the burst is over
        assert (await c.post("/v1/predict", files=_file(data))).status_code == 200


async def test_models_and_readiness(client: httpx.AsyncClient) -> None:
    ready = (await client.get("/v2/health/ready")).json()
    assert ready["ready"] is True and ready["checks"] == {"models": True, "chest_engine": True}
    models = (await client.get("/v2/models")).json()["models"]
    assert {m["name"] for m in models} == {"chest-gate", "chest-abnormality", "lung-seg"}
    assert all(m["provider"] == "CPUExecutionProvider" for m in models)
    card = (await client.get("/v2/models/chest-abnormality")).json()
    assert card["threshold"] == {"abnormal": 0.5}


async def test_without_chest_models_predictions_are_unavailable(tmp_path: Path) -> None:
    from tests.onnxgen import tiny_model_folder

    tiny_model_folder(tmp_path, "tiny")
    s = settings_for(tmp_path, required_models=["tiny"])
    async with client_for(s) as (_, c):
        assert (await c.get("/v2/health/ready")).status_code == 200
        r = await c.post("/v1/predict", files=_file(chest_png()))
        assert r.status_code == 503 and r.json()["error"]["code"] == "service_unavailable"
        assert "retry-after" in r.headers


async def test_openapi_is_typed(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    predict = doc["paths"]["/v1/predict"]["post"]
    ok = predict["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["$ref"].endswith("/ChestPrediction")
    assert ok["example"]["label"] == "abnormal"
    for status in ("413", "415", "422", "503"):
        ref = predict["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorEnvelope"), status
    assert "not_a_chest_xray" in predict["responses"]["422"]["description"]
    batch = doc["paths"]["/v1/predict/batch"]["post"]
    assert batch["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ChestBatchResponse"
    )
    legacy = doc["paths"]["/api/tb"]["post"]
    assert legacy["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/LegacyTbResponse"
    )
    assert "400" in legacy["responses"]


def test_probabilities_are_sanitised() -> None:
    from tb_service.engine import _prob

    assert _prob(float("nan"), 0.0) == 0.0
    assert _prob(1.5, 0.0) == 1.0 and _prob(-0.1, 0.5) == 0.0 and _prob(0.25, 0.0) == 0.25


async def test_a_bug_in_one_batch_item_fails_only_that_item(models_dir: Path) -> None:
    async with client_for(settings_for(models_dir)) as (app, c):
        engine = app.state.ctx.extras["chest"]
        real_prepare = engine.prepare

        def flaky(data: bytes) -> object:
            if data.startswith(b"\x89PNG") and len(data) < 2000:
                raise RuntimeError("simulated bug")
            return real_prepare(data)

        engine.prepare = flaky
        small = png_bytes(gradient(40, 40))
        files = [
            ("files", ("ok.png", chest_png(), "image/png")),
            ("files", ("bug.png", small, "image/png")),
        ]
        r = await c.post("/v1/predict/batch", files=files)
        assert r.status_code == 200
        ok, bug = r.json()["results"]
        assert ok["prediction"] is not None
        assert bug["error"]["code"] == "processing_failed" and bug["error"]["status"] == 500
        assert "simulated" not in r.text


async def test_preprocessing_skew_refuses_to_start(tmp_path: Path) -> None:
    from tb_service import preprocess
    from tb_service.engine import PreprocessingMismatch

    root = chest_model_folders(tmp_path)
    card_path = root / "chest-abnormality" / "1" / "card.json"
    card = json.loads(card_path.read_text())
    steps = preprocess.chest_pipeline(preprocess.INPUT_SIZE).describe()
    card["preprocessing"] = {"steps": steps}
    card_path.write_text(json.dumps(card))
    async with client_for(settings_for(root)) as (_, c):  # matching steps: starts
        assert (await c.get("/v2/health/ready")).status_code == 200
    steps[-1]["params"]["mode"] = "unit"  # trained with another normalisation
    card_path.write_text(json.dumps(card))
    with pytest.raises(PreprocessingMismatch):
        async with client_for(settings_for(root)):
            pass
    async with client_for(settings_for(root, strict_preprocessing=False)) as (_, c):
        assert (await c.get("/v2/health/ready")).status_code == 200
