"""A view's job goes on from what the screen at submission made of it (issue 15): decode,
orientation and crop run once per view, not twice, and the result is the one the whole path
gives without the screen's state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bc_service.pipeline import MammoPipeline, ViewInput, geometry
from bc_service.settings import MODELS_DIR
from shared.contracts.mammo import STAGES
from shared.imaging import decode_image
from shared.model import ModelRepository
from tests.imagegen import mammo_phantom, png_bytes


def _pipeline() -> MammoPipeline:
    if any(MODELS_DIR.glob("*/*/model.onnx")):
        repo = ModelRepository(MODELS_DIR, use_gpu=False, intra_op_threads=1)
        repo.load_all()
        return MammoPipeline(repo, gate=False)  # the phantom is no mammogram to the gate
    return MammoPipeline(ModelRepository(Path("/nonexistent-models")))


def _result(view: ViewInput, pipe: MammoPipeline, seen: list[str]) -> dict[str, Any]:
    body = pipe.run_view(view, lambda stage, _f: seen.append(stage)).model_dump()
    body.pop("timings_ms")
    return body


def test_the_job_reuses_the_screen_and_answers_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = _pipeline()
    image = decode_image(png_bytes(mammo_phantom(chest_wall="right", view="CC", seed=3)))
    plain_stages: list[str] = []
    plain = _result(ViewInput("view-0", image, "R-CC"), pipe, plain_stages)

    masks: list[int] = []
    real = geometry.breast_mask

    def counting(*a: Any, **kw: Any) -> Any:
        masks.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(geometry, "breast_mask", counting)
    view = ViewInput("view-0", image, "R-CC")
    pipe.screen(view)
    assert view.screened is not None
    stages: list[str] = []
    screened = _result(view, pipe, stages)
    assert len(masks) == 1  # orientation ran at the screen only
    assert screened == plain
    assert stages == plain_stages and stages[: len(STAGES)] == STAGES  # progress unchanged
