"""The patient-level cross-validation of the version-2 trainings (TensorFlow-free): both
breasts of a woman in one fold, folds stratified, out-of-fold scores that never saw their
fold's labels, and Platt calibration."""

from __future__ import annotations

import numpy as np

from bc_service.train.folds import N_FOLDS, patient_folds, woman
from bc_service.train.screen import oof_logits, platt, sigmoid


def _cohort() -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for w in range(1, 101):
        kinds = rng.choice(["normal", "benign", "malignant"], size=2, p=[0.6, 0.2, 0.2])
        for k, side in enumerate((2 * w - 1, 2 * w)):
            paths.append(f"mdb{side:03d}.png")
            labels.append(str(kinds[k]))
    return paths, labels


def test_both_breasts_of_a_woman_share_a_fold_and_folds_are_stratified() -> None:
    paths, labels = _cohort()
    fold = patient_folds(paths, labels)
    assert set(fold.tolist()) == set(range(N_FOLDS))
    by_woman: dict[int, set[int]] = {}
    for p, f in zip(paths, fold.tolist(), strict=True):
        by_woman.setdefault(woman(p), set()).add(f)
    assert all(len(f) == 1 for f in by_woman.values())
    y = np.array(labels)
    for k in range(N_FOLDS):
        share = float(np.mean(y[fold == k] != "normal"))
        assert abs(share - float(np.mean(y != "normal"))) < 0.12


def test_out_of_fold_scores_never_see_their_folds_labels() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] + rng.normal(scale=0.5, size=200) > 0).astype(int)
    fold = np.arange(200) % N_FOLDS
    keep = np.ones(200, bool)
    base = oof_logits(x, y, fold, 1.0, keep)
    flipped = y.copy()
    flipped[fold == 0] = 1 - flipped[fold == 0]
    again = oof_logits(x, flipped, fold, 1.0, keep)
    assert np.allclose(base[fold == 0], again[fold == 0])  # fold 0 scored without its labels
    assert not np.allclose(base[fold == 1], again[fold == 1])  # the others did see them


def test_platt_calibrates_overconfident_logits() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(size=4000)
    y = (rng.random(4000) < sigmoid(z)).astype(int)
    a, b = platt(5.0 * z, y)  # five times too confident
    assert abs(a - 0.2) < 0.03 and abs(b) < 0.1
