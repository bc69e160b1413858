"""mammo-view/2 and mammo-density/1 in the served pipeline: the two breasts of an exam are
read with each other, a breast without the other one falls back to the unilateral head at its
own operating point (said in the notes), view, breast and exam categories agree by
construction, density per breast with the dense-tissue sentence, and the benign-vs-malignant
estimate absent while the card's evidence does not allow it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bc_service.pipeline import MammoPipeline, ViewInput
from shared.contracts.mammo import DENSE_NOTE, ViewResult
from shared.contracts.screening import Category
from shared.imaging import decode_image
from shared.model import ModelRepository, read_card
from shared.settings import default_data_dir
from tests.imagegen import mammo_phantom, png_bytes

MODELS = Path(__file__).resolve().parents[2] / "bc_service" / "models"
MIAS = default_data_dir() / "mini-mias"
needs_mias = pytest.mark.skipif(
    not (MIAS / "labels.csv").exists(), reason=f"mini-mias data absent at {MIAS}"
)


@pytest.fixture(scope="module")
def repo() -> ModelRepository:
    r = ModelRepository(
        MODELS, required=MammoPipeline.required_models, use_gpu=False, intra_op_threads=1
    )
    r.load_all()
    return r


@pytest.fixture(scope="module")
def pipeline(repo: ModelRepository) -> MammoPipeline:
    return MammoPipeline(repo)


def _view(pipe: MammoPipeline, data: bytes, tag: str, view_id: str) -> ViewResult:
    return pipe.run_view(
        ViewInput(view_id, decode_image(data), tag),  # type: ignore[arg-type]
        lambda a, b: None,
    )


def _mias(pipe: MammoPipeline, name: str, tag: str, view_id: str) -> ViewResult:
    return _view(pipe, (MIAS / name).read_bytes(), tag, view_id)


def _consistent(exam: object) -> None:
    from shared.contracts.mammo import ExamResult

    assert isinstance(exam, ExamResult)
    for b in exam.breasts:
        mine = [v for v in exam.views if v.view_id in b.views]
        flagged = any(v.category == Category.review_recommended for v in mine)
        assert (b.category == Category.review_recommended) == flagged
        assert b.score == max(v.score for v in mine)
        for v in mine:
            assert v.score_threshold is not None
            assert (v.category == Category.review_recommended) == (v.score >= v.score_threshold)
    any_breast = any(b.category == Category.review_recommended for b in exam.breasts)
    assert (exam.category == Category.review_recommended) == any_breast


def test_the_served_card_is_model_2_with_both_points(pipeline: MammoPipeline) -> None:
    assert pipeline.operating_point is not None and pipeline.unilateral_point is not None
    assert pipeline.operating_point.model.version == "2"
    card = read_card(MODELS / "mammo-view" / "2")
    assert card.operating_point is not None
    assert pipeline.score_threshold == card.operating_point.score_threshold
    extra = card.model_extra or {}
    assert extra["calibration"]["prevalence_abnormal"] == pytest.approx(0.357, abs=0.001)
    assert "never a risk" in extra["calibration"]["method"]


@needs_mias
def test_two_breasts_are_read_with_each_other(pipeline: MammoPipeline) -> None:
    right = _mias(pipeline, "mdb001.png", "R-MLO", "view-0")
    left = _mias(pipeline, "mdb002.png", "L-MLO", "view-1")
    alone = (right.score, left.score)
    exam = pipeline.combine([right, left])
    assert [v.comparison for v in exam.views] == ["contralateral", "contralateral"]
    assert all(b.comparison == "contralateral" for b in exam.breasts)
    assert exam.operating_point is not None
    assert all(v.score_threshold == exam.operating_point.score_threshold for v in exam.views)
    assert (right.score, left.score) != alone  # the bilateral head read them again
    assert not any("alone" in n for n in exam.notes)
    _consistent(exam)
    for b in exam.breasts:
        assert b.density is not None
        assert sum(b.density.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    # What combine needed never travels on the wire.
    assert "_evidence" not in exam.model_dump_json()


@needs_mias
def test_one_breast_falls_back_to_the_unilateral_model(pipeline: MammoPipeline) -> None:
    only = _mias(pipeline, "mdb003.png", "R-MLO", "view-0")
    exam = pipeline.combine([only])
    (breast,) = exam.breasts
    assert only.comparison == breast.comparison == "unilateral"
    assert exam.unilateral_operating_point is not None
    assert only.score_threshold == exam.unilateral_operating_point.score_threshold
    assert any("read from that breast alone" in n for n in exam.notes)
    _consistent(exam)


@needs_mias
def test_cc_is_compared_with_cc_and_mlo_with_mlo(pipeline: MammoPipeline) -> None:
    """A 3-view exam: the two MLOs read with each other, the lone CC by itself."""
    views = [
        _mias(pipeline, "mdb001.png", "R-MLO", "view-0"),
        _mias(pipeline, "mdb002.png", "L-MLO", "view-1"),
        _mias(pipeline, "mdb005.png", "L-CC", "view-2"),
    ]
    exam = pipeline.combine(views)
    assert [v.comparison for v in exam.views] == ["contralateral", "contralateral", "unilateral"]
    left = next(b for b in exam.breasts if b.laterality == "L")
    assert left.comparison == "unilateral"
    _consistent(exam)


@needs_mias
def test_no_malignancy_estimate_while_the_card_says_no(pipeline: MammoPipeline) -> None:
    estimate = (read_card(MODELS / "mammo-view" / "2").model_extra or {})["malignancy_estimate"]
    assert estimate["shown"] is (estimate["oof_auc"]["ci95"][0] >= 0.70)
    exam = pipeline.combine(
        [
            _mias(pipeline, "mdb001.png", "R-MLO", "view-0"),
            _mias(pipeline, "mdb002.png", "L-MLO", "view-1"),
        ]
    )
    if not estimate["shown"]:
        assert all(b.malignancy is None for b in exam.breasts)
        assert exam.malignancy_note and "does not clear 0.70" in exam.malignancy_note
    else:  # only flagged breasts carry one
        for b in exam.breasts:
            assert (b.malignancy is not None) == (b.category == Category.review_recommended)


def test_a_dense_breast_says_a_clear_screen_is_worth_less(repo: ModelRepository) -> None:
    pipeline = MammoPipeline(repo, gate=False)  # a phantom is no mammogram to the gate
    view = _view(pipeline, png_bytes(mammo_phantom(seed=7)), "L-MLO", "view-0")
    view._density = (0.05, 0.15, 0.8)
    exam = pipeline.combine([view])
    (breast,) = exam.breasts
    assert breast.density is not None and breast.density.category == "dense_glandular"
    assert breast.density.note == DENSE_NOTE and "worth less" in DENSE_NOTE
    assert any(DENSE_NOTE in n for n in exam.notes)
    view._density = (0.8, 0.15, 0.05)
    calm = pipeline.combine([view])
    assert calm.breasts[0].density is not None and calm.breasts[0].density.note == ""


def test_card_operating_point_is_the_oof_point_training_wrote() -> None:
    """publish_screen writes ``operating_point`` from the pooled OOF point (no hand edit):
    the threshold, the rates and their counts agree with the card's own OOF details."""
    card = read_card(MODELS / "mammo-view" / "2")
    assert card.operating_point is not None
    details = card.metrics["oof_details"]["operating_points"]
    for section, head in (
        (card.operating_point.model_dump(), "bilateral"),
        ((card.model_extra or {})["operating_point_unilateral"], "unilateral"),
    ):
        oof = details[head]
        assert section["score_threshold"] == pytest.approx(100 * oof["threshold"], abs=1e-3)
        assert section["sensitivity"]["value"] == oof["sensitivity"]["value"]
        assert section["specificity"]["value"] == oof["specificity"]["value"]
        assert section["sensitivity"]["n"] == oof["counts"]["tp"] + oof["counts"]["fn"]
        assert "out-of-fold" in section["measured_on"]
    assert card.threshold_for("abnormal_bilateral") == details["bilateral"]["threshold"]
