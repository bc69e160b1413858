"""The CNN lesion-detector experiment (bc_service.train.cnn_detector): negatives only away
from lesions and none from an abnormal image without a located lesion, lesion-centred
positives, and the fully convolutional map lining up with the training patches."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from bc_service.train import cnn_detector as cd
from bc_service.train import cnn_evaluation as ce
from bc_service.train.cohort import LESION_CLASSES


def _case(label: str, lesions: list[tuple[float, float, float, int]]) -> SimpleNamespace:
    return SimpleNamespace(case=SimpleNamespace(label=label), lesions_work=lesions)


def _maps(h: int, w: int) -> SimpleNamespace:
    return SimpleNamespace(inner=np.ones((h, w), bool), mask=np.ones((h, w), bool))


def test_negatives_keep_clear_of_lesions_and_spread_lesions_give_none() -> None:
    # A lesion at working (200, 200), radius 40: at half resolution (100, 100), r 20.
    ok = cd._neg_ok(_case("benign", [(200.0, 200.0, 40.0, 1)]), _maps(200, 200))
    assert not ok[100, 100] and not ok[100, 133] and ok[100, 135]  # 1.5 r + 4 = 34 px
    assert cd._neg_ok(_case("normal", []), _maps(20, 20)).all()
    assert not cd._neg_ok(_case("malignant", []), _maps(20, 20)).any()


def test_positives_centre_on_the_lesion() -> None:
    img = np.zeros((120, 80, 2), np.float32)
    img[60, 40] = 1.0  # a single bright pixel at the lesion centre
    case = _case("malignant", [(80.0, 120.0, 20.0, 2)])  # half resolution (40, 60), r 10
    cohort = SimpleNamespace(items=[case])
    neg = [np.zeros((120, 80), bool)]
    x, y = cd.sample_epoch(np.array([0]), cohort, [img], neg, {}, np.random.default_rng(0))  # type: ignore[arg-type]
    assert y.all() and len(y) == len(cd.RADII) * cd.POS_PER_RADIUS
    # the bright pixel is within 10 px (the whole radius) of every patch's centre
    r, c = np.nonzero(x[..., 0].max(axis=0) > 0)
    assert np.all(np.abs(r - cd.PATCH // 2) <= 11) and np.all(np.abs(c - cd.PATCH // 2) <= 11)


def test_the_map_is_the_patch_classifier_at_every_grid_point() -> None:
    pytest.importorskip("tensorflow")
    model = cd.detector_net(2, seed=0)
    rng = np.random.default_rng(0)
    img = rng.random((100, 70, 2)).astype(np.float32)
    pm = cd.prob_map(model, img, np.ones((100, 70), bool))
    centres = np.array([[0, 0], [8, 16], [40, 64], [96, 64]], np.int64)
    direct = model(cd._crop(img, centres), training=False).numpy().ravel()
    np.testing.assert_allclose(pm[centres[:, 0], centres[:, 1]], direct, atol=1e-4)


def _auc(v: float) -> dict[str, object]:
    return {"value": v, "ci95": [v - 0.05, v + 0.05]}


def test_the_report_puts_every_variant_beside_the_served_model() -> None:
    na = {
        "view_bilateral_reference": {"auc": _auc(0.627)},
        "view_bilateral_plus_cnn": {
            "auc": _auc(0.629),
            "vs_reference": {"delta": 0.002, "ci_low": -0.025, "ci_high": 0.031},
        },
        "cnn_features_logistic": {"auc": _auc(0.627)},
        "cnn_max_alone_no_fit": {"auc": _auc(0.588)},
    }
    bm = {
        "view_unilateral_reference": {"auc": _auc(0.405)},
        "view_unilateral_plus_cnn_own": {"auc": _auc(0.391)},
    }
    loc = {
        "peak_in_lesion": _auc(0.294),
        "chance_rate": 0.029,
        "per_class_hits": {c: [1, 2] for c in LESION_CLASSES},
    }
    variant = {
        "normal_vs_abnormal": na,
        "benign_vs_malignant": bm,
        "localisation": loc,
        "infer_cpu_s_per_view": {"median": 0.029},
    }
    text = ce.report_markdown(
        {"hog_baseline_oof_auc": 0.541, "variants": {"bilateral_hnm": variant, "partial": {}}}
    )
    assert "| served mammo-view/2 (bilateral evidence features) | 0.627 (0.577-0.677) |" in text
    assert "| bilateral_hnm | 0.629 (0.579-0.679) | +0.002 (-0.025, +0.031) |" in text
    assert "partial" not in text  # a variant without all folds has no figures to show
    assert "HOG baseline 0.541" in text
