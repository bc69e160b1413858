"""bc_service's warm-up sends a PNG, a JPEG and a DICOM through every stage at start-up."""

from __future__ import annotations

import logging

import pytest

from bc_service.pipeline import MammoPipeline
from bc_service.settings import MODELS_DIR
from shared.model import ModelRepository


def test_warmup_runs_every_format_through_every_stage(caplog: pytest.LogCaptureFixture) -> None:
    repo = ModelRepository(MODELS_DIR, required=MammoPipeline.required_models, use_gpu=False)
    repo.load_all()
    pipe = MammoPipeline(repo)
    assert not pipe.ready
    with caplog.at_level(logging.INFO, logger="irmi.inference"):
        pipe.warmup()
    assert pipe.ready and set(pipe.warmup_ms) == {"png", "jpeg", "dicom"}
    # The phantom passes every stage (the gate's verdict aside): nothing was refused.
    assert not [r for r in caplog.records if "refused" in r.getMessage()]
