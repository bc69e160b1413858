"""The mammography trainers' metrics: :mod:`shared.train.evaluation` under the mammography cards'
conventions (every interval from 2000 case resamples stratified by class, so each resample
holds both classes; operating points by Youden's J). TensorFlow-free."""

from __future__ import annotations

from shared.train import evaluation
from shared.train.evaluation import Arr, Estimate, Score, accuracy, auc, youden_threshold
from shared.train.evaluation import confusion_matrix as confusion
from shared.train.evaluation import one_vs_rest_macro_auc as macro_auc
from shared.train.evaluation import operating_point as binary_at

N_BOOT = 2000

__all__ = [
    "N_BOOT",
    "accuracy",
    "auc",
    "binary_at",
    "bootstrap_ci",
    "confusion",
    "macro_auc",
    "proportion_ci",
    "youden_threshold",
]


def bootstrap_ci(score: Score, y: Arr, s: Arr, *, n: int = N_BOOT, seed: int = 0) -> Estimate:
    """``score(y, s)`` with its 95% CI over ``n`` class-stratified resamples."""
    return evaluation.bootstrap_ci(score, y, s, n_boot=n, seed=seed, stratified=True)


def proportion_ci(hits: Arr, seed: int = 0) -> Estimate:
    """The share of true ``hits`` with its 95% CI (one class: plain resampling)."""
    return evaluation.proportion_ci(hits, n_boot=N_BOOT, seed=seed)
