"""The committed mammography models: sha256 verified on load, cards complete, run on real
images (mini-mias, skipped when absent) and refuse non-mammograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bc_service.pipeline import MammoPipeline, ViewInput
from shared.contracts.mammo import STAGES
from shared.errors import NotAMammogram
from shared.imaging import decode_image
from shared.model import ModelRepository, file_sha256, read_card
from shared.settings import default_data_dir
from tests.imagegen import gradient, png_bytes

MODELS = Path(__file__).resolve().parents[2] / "bc_service" / "models"
NAMES = MammoPipeline.required_models
DATA = default_data_dir()
MIAS = DATA / "mini-mias"
needs_mias = pytest.mark.skipif(
    not (MIAS / "labels.csv").exists(), reason=f"mini-mias data absent at {MIAS}"
)


@pytest.fixture(scope="module")
def repo() -> ModelRepository:
    r = ModelRepository(MODELS, required=NAMES, use_gpu=False, intra_op_threads=1)
    r.load_all()
    return r


@pytest.fixture(scope="module")
def pipeline(repo: ModelRepository) -> MammoPipeline:
    return MammoPipeline(repo)


def _versions() -> list[tuple[str, str]]:
    return [(n, v.name) for n in NAMES for v in sorted((MODELS / n).iterdir()) if v.is_dir()]


@pytest.mark.parametrize(("name", "version"), _versions())
def test_card_matches_file_and_is_complete(name: str, version: str) -> None:
    folder = MODELS / name / version
    card = read_card(folder)
    assert card.sha256 == file_sha256(folder / "model.onnx")
    assert card.name == name and card.version == version
    assert card.training_data and card.metrics and card.intended_use and card.limitations
    assert any("CC" in lim for lim in card.limitations)
    assert (folder / "report.md").exists()
    assert (folder / "model.onnx").stat().st_size < 2_000_000


def test_repository_loads_all(repo: ModelRepository) -> None:
    assert repo.ready
    assert set(NAMES) <= set(repo.models)


def test_tampered_model_refused(tmp_path: Path) -> None:
    import shutil

    from shared.model import ModelIntegrityError, OnnxModel

    dst = tmp_path / "mammo-view" / "1"
    shutil.copytree(MODELS / "mammo-view" / "1", dst)
    with (dst / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelIntegrityError):
        OnnxModel(dst, use_gpu=False).load()


def test_gate_refuses_synthetic_non_mammograms(pipeline: MammoPipeline) -> None:
    rng = np.random.default_rng(0)
    for img in (gradient(200, 160), (rng.random((128, 128)) * 255).astype(np.uint8)):
        with pytest.raises(NotAMammogram) as err:
            pipeline.run_view(ViewInput("v", decode_image(png_bytes(img)), None), lambda a, b: None)
        assert "score" in err.value.details or "reason" in err.value.details


@needs_mias
@pytest.mark.parametrize("name", ["mdb001.png", "mdb004.png"])
def test_real_mammograms_run(pipeline: MammoPipeline, name: str) -> None:
    seen: list[str] = []
    res = pipeline.run_view(
        ViewInput("view-0", decode_image((MIAS / name).read_bytes()), None),
        lambda stage, frac: seen.append(stage),
    )
    assert seen == STAGES
    assert res.view == "MLO"
    assert res.probabilities is None and res.label is None  # model 1's, deprecated
    assert res.score_map is not None and res.score_map.image_width == 1024
    exam = pipeline.combine([res])
    # Read at the mammo-view card's operating point (its measured rates travel with it).
    assert exam.operating_point is not None and exam.operating_point.model.name == "mammo-view"
    assert exam.score_threshold == exam.operating_point.score_threshold
    assert exam.unilateral_operating_point is not None
    assert res.score_threshold == exam.unilateral_operating_point.score_threshold  # one view
    assert {m.name for m in exam.models} == set(NAMES)


@pytest.mark.skipif(
    not (DATA / "nih-cxr14" / "labels.csv").exists(), reason="nih-cxr14 data absent"
)
def test_chest_xray_refused(pipeline: MammoPipeline) -> None:
    import csv

    with (DATA / "nih-cxr14" / "splits.csv").open() as fh:
        tests = [r["path"] for r in csv.DictReader(fh) if r["split"] == "test"][:3]
    refused = 0
    for p in tests:
        try:
            pipeline.run_view(
                ViewInput("v", decode_image((DATA / "nih-cxr14" / p).read_bytes()), None),
                lambda a, b: None,
            )
        except NotAMammogram:
            refused += 1
    assert refused >= 2


def test_phantom_through_trained_models_without_gate(repo: ModelRepository) -> None:
    from tests.imagegen import mammo_phantom

    pipe = MammoPipeline(repo, gate=False)
    img = mammo_phantom(chest_wall="right", view="CC", lesion=(120, 250, 12))
    res = pipe.run_view(
        ViewInput("view-0", decode_image(png_bytes(img)), "R-CC"), lambda a, b: None
    )
    assert res.tag == "R-CC" and res.detected_laterality == "R" and res.flipped
    assert res.tag_conflict is None
    models = {m.name for m in pipe.combine([res]).models}
    assert models == {"mammo-patch", "mammo-view", "mammo-density"}
