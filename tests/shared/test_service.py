"""The shared app skeleton: envelope, request ids, metrics, health and model routes, settings."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from shared.errors import NotAChestXray, Overloaded
from shared.logs import JsonFormatter
from shared.model import ModelRepository
from shared.service import create_service_app
from shared.settings import ServiceSettings
from tests.onnxgen import tiny_model_folder


class _Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IRMI_TEST_", extra="ignore")


def _app(tmp_path: Path) -> FastAPI:
    tiny_model_folder(tmp_path, "tiny")
    repo = ModelRepository(tmp_path, required=["tiny"], use_gpu=False)
    app = create_service_app(name="t", title="t", version="0", settings=_Settings(), models=repo)

    @app.get("/boom")
    async def boom() -> None:
        raise NotAChestXray(details={"score": 0.1})

    @app.get("/busy")
    async def busy() -> None:
        raise Overloaded(retry_after=3)

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("secret internals")

    return app


@pytest.fixture
async def client(tmp_path: Path):
    app = _app(tmp_path)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c


async def test_health_and_models(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    ready = await client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    models = (await client.get("/v2/models")).json()["models"]
    assert models[0]["name"] == "tiny" and models[0]["provider"] == "CPUExecutionProvider"
    card = (await client.get("/v2/models/tiny")).json()
    assert len(card["sha256"]) == 64 and card["ready"] is True
    assert (await client.get("/v2/models/tiny/versions/1")).status_code == 200
    missing = await client.get("/v2/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_error_envelope(client: httpx.AsyncClient) -> None:
    r = await client.get("/boom")
    assert r.status_code == 422
    assert r.json() == {
        "error": {
            "code": "not_a_chest_xray",
            "message": "This is not a valid chest X-ray.",
            "details": {"score": 0.1},
        }
    }
    busy = await client.get("/busy")
    assert busy.status_code == 503 and busy.headers["retry-after"] == "3"
    assert busy.json()["error"]["code"] == "overloaded"
    crash = await client.get("/crash")
    assert crash.status_code == 500
    assert crash.json()["error"]["code"] == "processing_failed"
    assert "secret internals" not in crash.text
    nf = await client.get("/no/such/route")
    assert nf.status_code == 404 and nf.json()["error"]["code"] == "not_found"


async def test_request_id_echoed_or_generated(client: httpx.AsyncClient) -> None:
    r = await client.get("/v2/health/live", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    evil = await client.get("/v2/health/live", headers={"X-Request-ID": "x\ny" * 50})
    assert evil.headers["x-request-id"] != "x\ny" * 50 and len(evil.headers["x-request-id"]) == 32


async def test_metrics_count_requests(client: httpx.AsyncClient) -> None:
    await client.get("/v2/health/live")
    text = (await client.get("/metrics")).text
    assert (
        'irmi_http_requests_total{method="GET",route="/v2/health/live",service="t",status="200"}'
        in text
    )


async def test_not_ready_until_models_load(tmp_path: Path) -> None:
    app = _app(tmp_path)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/v2/health/ready")  # lifespan not run: nothing loaded
        assert r.status_code == 503 and r.json()["ready"] is False


def test_secrets_required_outside_dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    class WithSecret(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="IRMI_TEST_", extra="ignore")
        api_secret: SecretStr | None = None

    monkeypatch.delenv("IRMI_DEV_MODE", raising=False)
    with pytest.raises(ValueError, match="IRMI_TEST_API_SECRET"):
        WithSecret()
    monkeypatch.setenv("IRMI_TEST_API_SECRET", "from-env")
    assert WithSecret().api_secret is not None
    monkeypatch.delenv("IRMI_TEST_API_SECRET")
    monkeypatch.setenv("IRMI_DEV_MODE", "1")
    with pytest.warns(UserWarning):
        dev = WithSecret()
    assert dev.api_secret is not None and len(dev.api_secret.get_secret_value()) > 30


def test_data_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IRMI_DATA_DIR", str(tmp_path))
    assert _Settings().data_dir == tmp_path


def test_json_logs_never_carry_bytes() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "upload", None, None)
    record.body = b"\x89PNG" * 1000
    line = JsonFormatter("svc").format(record)
    assert "PNG" not in line and "<4000 bytes>" in line


async def test_unhandled_error_logged_with_request_id_and_route(client: httpx.AsyncClient) -> None:
    """One log line for an unhandled error, carrying the request id and the route template."""
    lines: list[dict[str, object]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(JsonFormatter("t").format(record)))

    handler = Capture()
    errors_log = logging.getLogger("irmi.errors")
    errors_log.addHandler(handler)
    try:
        r = await client.get("/crash", headers={"X-Request-ID": "crash-id-1"})
    finally:
        errors_log.removeHandler(handler)
    assert r.status_code == 500 and r.json()["error"]["code"] == "processing_failed"
    assert r.headers["x-request-id"] == "crash-id-1"
    unhandled = [rec for rec in lines if str(rec["msg"]).startswith("unhandled error")]
    assert len(unhandled) == 1, lines
    assert unhandled[0]["request_id"] == "crash-id-1"
    assert unhandled[0]["route"] == "/crash" and unhandled[0]["method"] == "GET"
    assert unhandled[0]["exc_type"] == "RuntimeError"
    assert "secret internals" not in json.dumps(unhandled[0])  # exception text is not logged
