"""The TensorFlow-free training loaders and metrics."""

from __future__ import annotations

import numpy as np
import pytest

from bc_service.pipeline.features import PATCH_SIZE, view_features
from bc_service.train import data as tdata
from bc_service.train import metrics as tm
from shared.settings import default_data_dir

MIAS = default_data_dir() / "mini-mias"
needs_mias = pytest.mark.skipif(
    not (MIAS / "labels.csv").exists(), reason=f"mini-mias data absent at {MIAS}"
)


def test_auc_matches_definition() -> None:
    y = np.array([0, 0, 1, 1, 1, 0])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.4])
    pairs = [(a, b) for a in s[y == 1] for b in s[y == 0]]
    expected = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs])
    assert tm.auc(y, s) == pytest.approx(expected)
    assert np.isnan(tm.auc(np.ones(3), np.arange(3)))


def test_bootstrap_ci_brackets_value() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = y + rng.normal(0, 1, 200)
    r = tm.bootstrap_ci(tm.auc, y, s, n=300)
    assert r["ci_low"] <= r["value"] <= r["ci_high"]
    assert r["n"] == 200


def test_youden_threshold_separates() -> None:
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    t = tm.youden_threshold(y, s)
    assert 0.3 < t < 0.7
    assert tm.binary_at(y, s, t)["accuracy"] == 1.0


def test_confusion_counts() -> None:
    assert tm.confusion(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1]), 3) == [
        [1, 0, 0],
        [0, 0, 1],
        [0, 1, 1],
    ]


def test_view_features_shape() -> None:
    p = np.array([[0.9, 0.05, 0.05], [0.2, 0.1, 0.7]], np.float32)
    f = view_features(p)
    assert f.shape == (12,)
    assert f[4] == pytest.approx(0.7)  # malignant max
    assert f[8] == pytest.approx(0.8)  # lesion (benign + malignant) max
    assert view_features(np.zeros((0, 3), np.float32)).shape == (12,)


def test_synthetic_negatives_and_augment() -> None:
    negs = tdata.synthetic_negatives(10, seed=0)
    assert len(negs) == 10 and all(n.dtype == np.uint8 and n.ndim == 2 for n in negs)
    rng = np.random.default_rng(0)
    img = (np.random.default_rng(1).random((120, 100)) * 255).astype(np.uint8)
    out = tdata.mammo_augment(img, rng)
    assert out.dtype == np.uint8 and out.ndim == 2
    assert tdata.gate_array(img).shape == (96, 96, 1)


@needs_mias
def test_read_mias_and_lesion_patches() -> None:
    cases = tdata.read_mias(MIAS)
    assert len(cases) == 322
    assert {c.split for c in cases} == {"train", "val", "test"}
    with_lesion = [c for c in cases if c.lesions and c.split == "train"][:2]
    normal = [c for c in cases if c.label == "normal" and c.split == "train"][:1]
    items = [tdata.prepare(MIAS, c) for c in with_lesion + normal]
    for it in items:
        for lx, ly, _lr, sev in it.lesions_work:
            assert it.mask[int(ly), int(lx)]  # lesion centre lies in the breast
            assert sev in (1, 2)
    x, y = tdata.sample_patches(items, per_lesion=3, normal_per_image=4, seed=0, augment=True)
    n_lesions = sum(len(it.lesions_work) for it in items)
    assert x.shape[1:] == (PATCH_SIZE, PATCH_SIZE, 1)
    assert (y > 0).sum() == 3 * n_lesions
    assert (y == 0).sum() <= 4 * len(items)
    assert x.min() >= 0.0 and x.max() <= 1.0
