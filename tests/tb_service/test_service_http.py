"""`python -m tb_service` over real HTTP, with tiny rigged models of the real models' I/O."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tb_service.routes import BATCH_SIZE_HEADER
from tests.imagegen import png_bomb
from tests.onnxgen import chest_model_folders
from tests.procs import Service, running
from tests.tb_service.svc_helpers import b64, blank_png, chest_png, decode_heatmap, histogram

# Small enough queue to overflow on purpose, long enough wait for batches to form.
ENV = {
    "IRMI_TB_BATCHING": "on",
    "IRMI_TB_PROCESSES": "1",  # one process: its batches and its queue
    "IRMI_TB_MAX_BATCH_SIZE": "8",
    "IRMI_TB_MAX_WAIT_MS": "150",
    "IRMI_TB_MAX_QUEUE": "8",
    "IRMI_TB_MAX_IN_FLIGHT": "8",
    "IRMI_TB_RETRY_AFTER_S": "2",
    "IRMI_TB_USE_GPU": "false",
    "IRMI_TB_ONNX_INTRA_OP_THREADS": "1",
    "IRMI_TB_MAX_UPLOAD_BYTES": "3000000",
}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    models = chest_model_folders(tmp_path_factory.mktemp("chest-http-models"))
    env = {**ENV, "IRMI_TB_MODELS_DIR": str(models)}
    with running("tb_service", env, timeout=90) as s:
        yield s


def _post_png(url: str, data: bytes, **params: str) -> httpx.Response:
    files = {"file": ("x.png", data, "image/png")}
    return httpx.post(url + "/v1/predict", params=params, files=files, timeout=60)


def test_predict_over_http(svc: Service) -> None:
    r = _post_png(svc.url, chest_png(300, 260))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["validity"]["passed"] is True
    assert body["label"] in {"normal", "abnormal"}
    assert body["category"] in {"review_recommended", "no_finding_flagged"}
    assert body["heatmap"] is None and len(body["score_map"]["values"]) == 8
    asked = _post_png(svc.url, chest_png(300, 260), heatmap="true").json()
    assert decode_heatmap(asked["heatmap"]).shape == (300, 260, 4)
    assert r.headers["x-request-id"]
    legacy = httpx.post(svc.url + "/api/tb", json={"image": b64(chest_png(300, 260))}, timeout=60)
    assert legacy.status_code == 200
    assert legacy.json()["prediction"] == body["probabilities"]


def test_errors_over_http(svc: Service) -> None:
    r = _post_png(svc.url, blank_png())
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_a_chest_xray"
    assert _post_png(svc.url, png_bomb()).json()["error"]["code"] == "image_too_large"
    bad = httpx.post(svc.url + "/api/tb", json={"image": "%%%"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    # An upload over the body limit is refused from its Content-Length.
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * 5_000_000
    r = _post_png(svc.url, big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    # The service is still fine afterwards.
    assert _post_png(svc.url, chest_png()).status_code == 200


def test_models_show_provider(svc: Service) -> None:
    models = httpx.get(svc.url + "/v2/models").json()["models"]
    assert {m["name"] for m in models} == {"chest-gate", "chest-abnormality", "lung-seg"}
    assert all(m["provider"] == "CPUExecutionProvider" and m["ready"] for m in models)
    card = httpx.get(svc.url + "/v2/models/chest-gate").json()
    assert card["threshold"] == {"chest": 0.5} and len(card["sha256"]) == 64


def test_simultaneous_requests_run_in_batches(svc: Service) -> None:
    before = histogram(httpx.get(svc.url + "/metrics").text, "irmi_batch_size", 'model="chest"')
    data = chest_png(240, 220, seed=3)
    with ThreadPoolExecutor(8) as pool:
        rs = list(pool.map(lambda _: _post_png(svc.url, data), range(8)))
    assert [r.status_code for r in rs] == [200] * 8, [r.text for r in rs]
    assert max(int(r.headers[BATCH_SIZE_HEADER]) for r in rs) > 1
    after = histogram(httpx.get(svc.url + "/metrics").text, "irmi_batch_size", 'model="chest"')
    items, runs = after[0] - before[0], after[1] - before[1]
    assert items == 8 and runs < 8


def test_overload_answers_503_with_retry_after(svc: Service) -> None:
    data = chest_png(240, 220, seed=4)
    with ThreadPoolExecutor(32) as pool:
        rs = list(pool.map(lambda _: _post_png(svc.url, data), range(48)))
    codes = [r.status_code for r in rs]
    assert set(codes) <= {200, 503}, codes
    assert 503 in codes and 200 in codes, codes
    busy = next(r for r in rs if r.status_code == 503)
    assert busy.headers["retry-after"] == "2"
    assert busy.json()["error"]["code"] == "overloaded"
    metrics = httpx.get(svc.url + "/metrics").text
    assert 'route="/v1/predict",service="tb_service",status="503"' in metrics


def test_logs_hold_no_image_bytes(svc: Service) -> None:
    logs = svc.logs()
    lines = [json.loads(x) for x in logs.splitlines() if x.startswith("{")]
    assert any(rec.get("route") == "/v1/predict" for rec in lines)
    assert "iVBORw0KGgo" not in logs  # no PNG base64 (heatmaps, legacy uploads) in the logs


def test_openapi_over_http(svc: Service) -> None:
    doc = httpx.get(svc.url + "/openapi.json").json()
    assert {"/v1/predict", "/v1/predict/batch", "/api/tb"} <= set(doc["paths"])


def test_settings_defaults() -> None:
    from tb_service.settings import MODELS_DIR, Settings

    s = Settings()
    assert s.models_dir == MODELS_DIR and s.port == 8001
    assert s.required_models == ["chest-gate", "chest-abnormality", "lung-seg"]
