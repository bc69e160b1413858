"""`python -m <service>` over real HTTP: each service starts alone and answers its routes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.onnxgen import tiny_model_folder
from tests.procs import REPO, refusal_of_tampered_step, running, served_version, spawn


@pytest.mark.parametrize(("module", "prefix"), [("tb_service", "TB"), ("bc_service", "BC")])
def test_inference_service_loads_a_model_folder(module: str, prefix: str, tmp_path: Path) -> None:
    tiny_model_folder(tmp_path, "tiny")
    env = {f"IRMI_{prefix}_MODELS_DIR": str(tmp_path), f"IRMI_{prefix}_REQUIRED_MODELS": '["tiny"]'}
    with running(module, env) as svc:
        assert httpx.get(svc.url + "/v2/health/live").json() == {"live": True}
        models = httpx.get(svc.url + "/v2/models").json()["models"]
        assert [m["name"] for m in models] == ["tiny"]
        assert "irmi_http_requests_total" in httpx.get(svc.url + "/metrics").text
    logs = svc.logs()
    # structured logs, one JSON object a line, with request ids
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(rec.get("route") == "/v2/models" and rec["request_id"] != "-" for rec in lines)


@pytest.mark.parametrize(("module", "prefix"), [("tb_service", "TB"), ("bc_service", "BC")])
def test_sha256_mismatch_refuses_to_start(module: str, prefix: str, tmp_path: Path) -> None:
    folder = tiny_model_folder(tmp_path, "tiny")
    card = json.loads((folder / "card.json").read_text())
    card["sha256"] = "f" * 64
    (folder / "card.json").write_text(json.dumps(card))
    env = {f"IRMI_{prefix}_MODELS_DIR": str(tmp_path), f"IRMI_{prefix}_REQUIRED_MODELS": '["tiny"]'}
    svc = spawn(module, env)
    deadline = time.monotonic() + 60
    while svc.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    code = svc.stop()
    assert code != 0
    assert "ModelIntegrityError" in svc.logs() or "does not match" in svc.logs()


@pytest.mark.parametrize(
    ("module", "model", "stage"),
    [("tb_service", "chest-abnormality", "clahe"), ("bc_service", "mammo-patch", "enhance")],
)
def test_card_preprocessing_skew_refuses_to_start(
    module: str, model: str, stage: str, tmp_path: Path
) -> None:
    """A card recording another CLAHE than the pipeline the service builds (the model was
    trained on other pixels): the service stops with one clear message."""
    models = REPO / module / "models"
    code, logs = refusal_of_tampered_step(module, models, tmp_path, model, stage, "clip_limit", 3.0)
    assert code != 0
    version = served_version(models, model)
    assert (
        f"start-up refused: PreprocessingMismatch: {model} v{version}: card preprocessing" in logs
    )
    assert "'clip_limit': 3.0" in logs and "serving pipeline" in logs


def test_gateway_starts_with_port_from_environment(tmp_path: Path) -> None:
    from tests.procs import free_port, wait_ready

    port = free_port()
    svc = spawn("gateway", {"IRMI_GATEWAY_PORT": str(port)}, port=port)
    try:
        wait_ready(svc)
        assert httpx.get(f"http://127.0.0.1:{port}/v2/health/live").status_code == 200
    finally:
        svc.stop()


def test_gateway_refuses_to_start_without_secret_outside_dev_mode(tmp_path: Path) -> None:
    svc = spawn("gateway", {"IRMI_DEV_MODE": "0"})
    deadline = time.monotonic() + 30
    while svc.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert svc.stop() != 0
    assert "IRMI_GATEWAY_JWT_SECRET" in svc.logs()
