"""tb_service reads every score at the abnormality card's operating point: the category comes
from shared categorize (outside the validated population always wins), findings only when
review is recommended, and the low-resolution score map of where the model looked; a card
without a usable operating point stops the service from starting."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from shared.contracts.screening import Category, ReliabilityReason
from shared.model import ModelCardError
from tb_service.engine import ChestEngine
from tests.imagegen import png_bytes
from tests.onnxgen import chest_model_folders
from tests.tb_service.svc_helpers import chest_like, chest_png, client_for, settings_for


@pytest.fixture(scope="module")
def always_abnormal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chest_model_folders(tmp_path_factory.mktemp("chest-abn"), abnormal_threshold=0.0)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chest_model_folders(tmp_path_factory.mktemp("chest-models"))


async def test_outside_population_is_never_no_finding(always_abnormal_dir: Path) -> None:
    """A film with a reliability reason: category outside_population and no findings, even
    from a model that flags everything; the deprecated label keeps its meaning."""
    async with client_for(settings_for(always_abnormal_dir, max_wait_ms=1)) as (app, c):
        engine = app.state.ctx.extras["chest"]
        assert isinstance(engine, ChestEngine)
        prepared = engine.prepare(chest_png())
        prepared.reasons.append(ReliabilityReason.mirrored)
        scored = engine.run_batch([prepared])[0]
        pred = engine.finish(prepared, scored, heatmap=False)
        # the same film as the service answers it without the reason
        r = await c.post("/v1/predict", files={"file": ("x.png", chest_png(), "image/png")})
    assert pred.category == Category.outside_population
    assert pred.reliability.outside_population and pred.reliability.reasons == ["mirrored"]
    assert pred.findings == []
    assert pred.model_dump()["label"] == "abnormal"  # P(abnormal) >= the 0-1 threshold
    body = r.json()
    assert body["category"] == "review_recommended" and body["findings"]


async def test_score_map_follows_the_evidence(models_dir: Path) -> None:
    """The rigged model's CAM is the input's brightness: a film brighter on its left has a
    score map hotter on its left, in the uploaded image's orientation."""
    img = chest_like(300, 300)
    left = img.copy()
    left[:, :150] = np.clip(left[:, :150].astype(int) + 80, 0, 255).astype(np.uint8)
    async with client_for(settings_for(models_dir, max_wait_ms=1)) as (_, c):
        r = await c.post("/v1/predict", files={"file": ("x.png", png_bytes(left), "image/png")})
    assert r.status_code == 200, r.text
    values = np.asarray(r.json()["score_map"]["values"])
    assert values[:, :4].mean() > values[:, 4:].mean()


def _edit_card(src: Path, dst: Path, edit: dict[str, object]) -> Path:
    shutil.copytree(src, dst)
    path = dst / "chest-abnormality" / "1" / "card.json"
    card = json.loads(path.read_text())
    for key, value in edit.items():
        if value is None:
            card.pop(key, None)
        else:
            card[key] = value
    path.write_text(json.dumps(card))
    return dst


async def test_card_without_operating_point_refuses_to_start(
    models_dir: Path, tmp_path: Path
) -> None:
    bare = _edit_card(models_dir, tmp_path / "bare", {"operating_point": None})
    with pytest.raises(ModelCardError, match="no operating_point"):
        async with client_for(settings_for(bare)):
            pass
    card = json.loads((models_dir / "chest-abnormality" / "1" / "card.json").read_text())
    moved = {**card["operating_point"], "score_threshold": 42.0}  # not 100 x threshold 0.5
    other = _edit_card(models_dir, tmp_path / "other", {"operating_point": moved})
    with pytest.raises(ModelCardError, match=r"is not 100 x threshold\.abnormal"):
        async with client_for(settings_for(other)):
            pass
