"""The documented example of a chest prediction names only stages the service really times."""

from __future__ import annotations

from pathlib import Path

from tb_service.routes import PREDICTION_EXAMPLE
from tests.onnxgen import chest_model_folders
from tests.tb_service.svc_helpers import chest_png, client_for, settings_for


async def test_example_timings_are_real_stages(tmp_path: Path) -> None:
    async with client_for(settings_for(chest_model_folders(tmp_path))) as (_, c):
        r = await c.post("/v1/predict", files={"file": ("x.png", chest_png(), "image/png")})
        doc = (await c.get("/openapi.json")).json()
    assert r.status_code == 200
    real = set(r.json()["timings_ms"])
    documented = set(PREDICTION_EXAMPLE["timings_ms"])
    assert documented <= real, documented - real
    assert "gate.grayscale" not in str(doc)
