"""The chest trainers' metrics (shared.train.evaluation under the chest conventions)."""

from __future__ import annotations

import numpy as np
import pytest

from tb_service.train import metrics as m


def test_auc_matches_sklearn_definition() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4])
    # Pairs (pos, neg): 9; ties count half.
    assert m.roc_auc(y, s) == pytest.approx((1 + 0 + 0 + 3 + 0.5 * 2 + 1) / 9)
    assert np.isnan(m.roc_auc(np.ones(3), np.arange(3)))
    fpr, tpr = m.roc_curve(y, s)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1


def test_threshold_for_sensitivity() -> None:
    y = np.array([1] * 10 + [0] * 10)
    p = np.concatenate([np.linspace(0.1, 1.0, 10), np.linspace(0.0, 0.5, 10)])
    t = m.threshold_for_sensitivity(y, p, 0.9)
    assert m.binary_stats(y, p, t)["sensitivity"] >= 0.9
    assert m.binary_stats(y, p, t + 1e-6)["sensitivity"] < 0.9


def test_bootstrap_contains_point() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.3 + rng.uniform(0, 0.7, 200), 0, 1)
    res = m.bootstrap(y, p, 0.5, n_boot=200)
    for k in ("accuracy", "sensitivity", "specificity", "auc"):
        lo, hi = res[k]["ci95"]
        assert lo <= res[k]["value"] <= hi


def test_temperature_fit_and_ece() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    true_logit = (y * 2 - 1) * 1.0 + rng.normal(0, 1, 2000)
    logits = np.stack([np.zeros_like(true_logit), true_logit * 4.0], axis=1)  # overconfident
    t = m.fit_temperature(logits, y)
    assert t > 1.5
    assert m.nll(logits, y, t) < m.nll(logits, y, 1.0)
    before, _ = m.reliability(y, m.softmax(logits)[:, 1])
    after, table = m.reliability(y, m.softmax(logits / t)[:, 1])
    assert after < before and table
