"""tb_service's engine is ready only once a PNG, a JPEG and a DICOM went through every stage."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.onnxgen import chest_model_folders
from tests.tb_service.svc_helpers import client_for, settings_for


async def test_engine_warms_every_format(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="irmi.inference"):
        async with client_for(settings_for(chest_model_folders(tmp_path))) as (app, c):
            engine = app.state.ctx.extras["chest"]
            assert (await c.get("/v2/health/ready")).status_code == 200
    assert engine.warmed and set(engine.warmup_ms) == {"png", "jpeg", "dicom"}
    assert not [r for r in caplog.records if "refused" in r.getMessage()]
