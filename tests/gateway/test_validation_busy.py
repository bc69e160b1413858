"""A validation run against a busy tb_service: the service refuses what exceeds its admission
bound with 503 + Retry-After, the run waits each one out and tries again, and ends with every
film scored and none failed (a 503 is never recorded as the film's outcome)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import Api, admin_api, run_gateway, sqlite_gateway_env
from tests.gateway.test_validation import DATA, MODELS, _follow, sample, zipped
from tests.procs import spawn, wait_ready

pytestmark = pytest.mark.skipif(
    not (DATA / "nih-cxr14").is_dir(), reason=f"needs nih-cxr14 under {DATA}"
)


def _refused(tb_url: str) -> int:
    text = httpx.get(f"{tb_url}/metrics", timeout=10).text
    pattern = r'irmi_http_requests_total\{[^}]*route="/v1/predict"[^}]*status="503"[^}]*\} (\S+)'
    return int(sum(float(v) for v in re.findall(pattern, text)))


def test_a_run_waits_out_an_overloaded_service(tmp_path: Path) -> None:
    env = {
        "IRMI_TB_USE_GPU": "false",
        "IRMI_TB_ONNX_INTRA_OP_THREADS": "1",
        "IRMI_TB_MODELS_DIR": str(MODELS),
        "IRMI_TB_MAX_IN_FLIGHT": "1",
    }
    tb = spawn("tb_service", env, log_dir=tmp_path)
    try:
        wait_ready(tb, timeout=240)
        gw_env = sqlite_gateway_env(tmp_path, tb.url, IRMI_GATEWAY_VALIDATION_CONCURRENCY="4")
        with run_gateway(gw_env, tmp_path) as gw:
            admin = admin_api(Api(gw.url), gw_env["IRMI_GATEWAY_DATABASE_URL"])
            rows = [r for r in sample() if r["source"] == "nih-cxr14"][5:15]
            run = admin.post(
                "/v1/admin/validation-runs", json={"name": "busy", "modality": "chest"}
            ).json()
            base = f"/v1/admin/validation-runs/{run['id']}"
            r = admin.post(f"{base}/uploads", files={"archive": ("a.zip", zipped(rows), "x/y")})
            assert r.status_code == 201, r.text
            assert admin.post(f"{base}/start").status_code == 202
            done = _follow(admin, run)[-1]
            assert (done["status"], done["scored"], done["failed"]) == ("done", len(rows), 0)
            assert _refused(tb.url) > 0, "the service was never busy: the test proves nothing"
    finally:
        tb.stop()
