"""The chest trainers' metrics: :mod:`shared.train.evaluation` under the chest cards' conventions
(every interval from 1000 unstratified case resamples; the screen's threshold from a target
sensitivity; temperature scaling for calibration). TensorFlow-free."""

from __future__ import annotations

from shared.train import evaluation
from shared.train.evaluation import (
    Arr,
    Estimate,
    ScreenSummary,
    fit_temperature,
    nll,
    reliability,
    roc_curve,
    softmax,
    threshold_for_sensitivity,
)
from shared.train.evaluation import auc as roc_auc
from shared.train.evaluation import operating_point as binary_stats

N_BOOT = 1000

__all__ = [
    "N_BOOT",
    "auc_ci",
    "binary_stats",
    "bootstrap",
    "fit_temperature",
    "nll",
    "proportion_ci",
    "reliability",
    "roc_auc",
    "roc_curve",
    "softmax",
    "threshold_for_sensitivity",
]


def bootstrap(
    y: Arr, p: Arr, threshold: float, n_boot: int = N_BOOT, seed: int = 0
) -> ScreenSummary:
    """Accuracy, sensitivity, specificity at ``threshold`` and AUC, with 95% CIs."""
    return evaluation.screen_summary(y, p, threshold, n_boot=n_boot, seed=seed)


def auc_ci(y: Arr, s: Arr, n_boot: int = N_BOOT, seed: int = 0) -> Estimate:
    return evaluation.bootstrap_ci(roc_auc, y, s, n_boot=n_boot, seed=seed)


def proportion_ci(hits: Arr, n_boot: int = N_BOOT, seed: int = 0) -> Estimate:
    return evaluation.proportion_ci(hits, n_boot=n_boot, seed=seed)
