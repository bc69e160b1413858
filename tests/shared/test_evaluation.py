"""shared.train.evaluation on small arrays, against scikit-learn and values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from shared.train import evaluation as ev

Y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
S = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.9, 0.2])


def test_auc_counts_ties_half_and_matches_sklearn() -> None:
    pairs = [(a, b) for a in S[Y == 1] for b in S[Y == 0]]
    by_hand = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs])
    assert ev.auc(Y, S) == pytest.approx(by_hand) == pytest.approx(skm.roc_auc_score(Y, S))
    assert math.isnan(ev.auc(np.ones(3), np.arange(3)))
    assert math.isnan(ev.auc(np.zeros(3), np.arange(3)))


def test_roc_curve_runs_from_origin_to_one_one() -> None:
    fpr, tpr = ev.roc_curve(Y, S)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(ev.auc(Y, S))


def test_operating_point_counts_and_rates() -> None:
    op = ev.operating_point(Y, S, 0.4)
    # predicted positive: 0.4, 0.8, 0.4, 0.4, 0.9 -> tp 3 (0.8, 0.4, 0.9), fp 2 (0.4, 0.4)
    assert (op["tp"], op["fp"], op["tn"], op["fn"]) == (3, 2, 2, 1)
    assert op["sensitivity"] == 0.75 and op["specificity"] == 0.5
    assert op["accuracy"] == 0.625 and op["threshold"] == 0.4
    assert op["sensitivity"] == pytest.approx(skm.recall_score(Y, S >= 0.4))
    assert math.isnan(ev.operating_point(np.zeros(4), np.arange(4), 2)["sensitivity"])


def test_confusion_matrix_and_accuracy_match_sklearn() -> None:
    y = np.array([0, 1, 2, 2, 1])
    pred = np.array([0, 2, 2, 1, 1])
    assert ev.confusion_matrix(y, pred, 3) == [[1, 0, 0], [0, 1, 1], [0, 1, 1]]
    assert ev.confusion_matrix(np.array([0]), np.array([0]), 2) == [[1, 0], [0, 0]]
    assert ev.accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred))


def test_one_vs_rest_macro_auc_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    p = rng.dirichlet([1, 1, 1], 60) + np.eye(3)[y] * 0.3
    p /= p.sum(axis=1, keepdims=True)
    want = skm.roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert ev.one_vs_rest_macro_auc(y, p) == pytest.approx(want)


def test_bootstrap_ci_brackets_the_value_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = y + rng.normal(0, 1, 200)
    for stratified in (False, True):
        est = ev.bootstrap_ci(ev.auc, y, s, n_boot=300, stratified=stratified)
        assert est["ci_low"] <= est["value"] <= est["ci_high"]
        assert est["ci95"] == [est["ci_low"], est["ci_high"]] and est["n"] == 200
        assert est["value"] == round(skm.roc_auc_score(y, s), 4)
        assert ev.bootstrap_ci(ev.auc, y, s, n_boot=300, stratified=stratified) == est
    assert ev.bootstrap_ci(ev.auc, y, s, n_boot=300, seed=1) != ev.bootstrap_ci(
        ev.auc, y, s, n_boot=300, seed=2
    )


def test_stratified_resamples_keep_class_counts() -> None:
    y = np.array([0] * 7 + [1] * 3)
    for idx in ev.resample_indices(y, n_boot=50, seed=0, stratified=True):
        assert np.bincount(y[idx], minlength=2).tolist() == [7, 3]
    plain = list(ev.resample_indices(y, n_boot=50, seed=0, stratified=False))
    assert any(np.bincount(y[i], minlength=2)[1] != 3 for i in plain)


def test_proportion_ci_and_its_empty_case() -> None:
    hits = np.array([True] * 30 + [False] * 70)
    est = ev.proportion_ci(hits, n_boot=500)
    assert est["value"] == 0.3 and est["n"] == 100
    assert 0.2 < est["ci_low"] < 0.3 < est["ci_high"] < 0.4
    empty = ev.proportion_ci(np.array([], bool))
    assert empty["n"] == 0 and math.isnan(empty["value"]) and math.isnan(empty["ci_low"])


def test_screen_summary_point_values_match_operating_point() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 150)
    p = np.clip(y * 0.3 + rng.uniform(0, 0.7, 150), 0, 1)
    res = ev.screen_summary(y, p, 0.5, n_boot=200)
    op = ev.operating_point(y, p, 0.5)
    for k in ("accuracy", "sensitivity", "specificity"):
        assert res[k]["value"] == op[k]  # type: ignore[literal-required]
        assert res[k]["ci_low"] <= res[k]["value"] <= res[k]["ci_high"]  # type: ignore[literal-required]
    assert res["auc"]["value"] == round(skm.roc_auc_score(y, p), 4)
    assert res["counts"] == {"tp": op["tp"], "tn": op["tn"], "fp": op["fp"], "fn": op["fn"]}


def test_threshold_for_sensitivity_is_the_highest_reaching_target() -> None:
    y = np.array([1] * 10 + [0] * 10)
    p = np.concatenate([np.linspace(0.1, 1.0, 10), np.linspace(0.0, 0.5, 10)])
    t = ev.threshold_for_sensitivity(y, p, 0.9)
    assert t == pytest.approx(0.2)  # 9 of the 10 positives are >= 0.2
    assert ev.operating_point(y, p, t)["sensitivity"] >= 0.9
    assert ev.operating_point(y, p, t + 1e-6)["sensitivity"] < 0.9
    assert ev.threshold_for_sensitivity(np.zeros(3), np.arange(3)) == 0.5


def test_youden_threshold_maximises_j_against_sklearn_roc() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 80)
    s = np.round(y * 0.4 + rng.uniform(0, 1, 80), 2)
    t = ev.youden_threshold(y, s)
    fpr, tpr, _ = skm.roc_curve(y, s)
    op = ev.operating_point(y, s, t)
    assert op["sensitivity"] + op["specificity"] - 1 == pytest.approx(np.max(tpr - fpr), abs=1e-4)
    assert t not in set(s)  # midway between neighbouring scores
    assert ev.youden_threshold(np.array([0, 1]), np.array([0.3, 0.3])) == 0.3


def test_temperature_scaling_and_ece() -> None:
    rng = np.random.default_rng(1)
    true_logit = rng.normal(0, 2, 4000)
    y = (rng.uniform(0, 1, 4000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    logits = np.stack([np.zeros_like(true_logit), true_logit * 4.0], axis=1)  # overconfident
    t = ev.fit_temperature(logits, y)
    assert 3.5 < t < 4.5  # the calibrated logits were scaled by 4
    assert ev.nll(logits, y, t) < ev.nll(logits, y, 1.0)
    assert ev.nll(logits, y, 1.0) == pytest.approx(skm.log_loss(y, ev.softmax(logits)[:, 1]))
    before, _ = ev.reliability(y, ev.softmax(logits)[:, 1])
    after, table = ev.reliability(y, ev.softmax(logits / t)[:, 1])
    assert after < before and sum(b["n"] for b in table) == 4000


def test_reliability_by_hand() -> None:
    y = np.array([0, 1, 1, 1])
    p = np.array([0.05, 0.15, 0.95, 1.0])
    ece, table = ev.reliability(y, p)
    assert [(b["lo"], b["n"]) for b in table] == [(0.0, 1), (0.1, 1), (0.9, 2)]
    # |0.05 - 0| * 1/4 + |0.15 - 1| * 1/4 + |0.975 - 1| * 2/4
    assert ece == pytest.approx(0.0125 + 0.2125 + 0.0125)
