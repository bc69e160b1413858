"""Evaluation of scores against binary labels: ROC AUC, percentile bootstrap CIs, operating
points, threshold choice and calibration, with one output schema (``Estimate``,
``OperatingPoint``, ``ScreenSummary``) for every figure a trainer or a site check reports.

No TensorFlow. numpy is imported here; scikit-learn (in the ``dev`` and ``train`` extras) is
imported by the functions that use it (:func:`auc`, :func:`roc_curve`,
:func:`confusion_matrix`), so importing this module never needs it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, TypedDict

import numpy as np
from numpy.typing import NDArray

Arr = NDArray[Any]
FloatArr = NDArray[np.float64]
Score = Callable[[Arr, Arr], float]
NAN = float("nan")


class Estimate(TypedDict):
    """A figure and its 95% percentile bootstrap interval over ``n`` cases. ``ci95`` and
    ``ci_low``/``ci_high`` hold the same bounds: the chest cards and reports read the pair,
    the mammography ones the names, so the one schema carries both."""

    value: float
    ci95: list[float]
    ci_low: float
    ci_high: float
    n: int


class Counts(TypedDict):
    tp: int
    tn: int
    fp: int
    fn: int


class OperatingPoint(TypedDict):
    """Sensitivity, specificity and accuracy of ``score >= threshold`` (NaN where a class is
    absent), rounded to 4 places, with the confusion counts."""

    threshold: float
    sensitivity: float
    specificity: float
    accuracy: float
    tp: int
    tn: int
    fp: int
    fn: int


class ScreenSummary(TypedDict):
    """A binary screen at one threshold: four estimates on the same resamples, and counts."""

    accuracy: Estimate
    sensitivity: Estimate
    specificity: Estimate
    auc: Estimate
    counts: Counts


class ReliabilityBin(TypedDict):
    lo: float
    hi: float
    conf: float  # mean predicted probability in the bin
    freq: float  # observed share of positives in the bin
    n: int


# ------------------------------------------------------------------------ point metrics


def auc(y: Arr, s: Arr) -> float:
    """ROC AUC (scikit-learn; ties count one half); NaN when one class is absent."""
    yb = np.asarray(y).astype(bool)
    if yb.all() or not yb.any():
        return NAN
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(yb, np.asarray(s, np.float64)))


def roc_curve(y: Arr, s: Arr) -> tuple[FloatArr, FloatArr]:
    """(false positive rate, true positive rate) at every distinct score, from (0, 0) to
    (1, 1) (scikit-learn, no intermediate point dropped)."""
    from sklearn.metrics import roc_curve as sk_roc_curve

    fpr, tpr, _ = sk_roc_curve(
        np.asarray(y).astype(bool), np.asarray(s, np.float64), drop_intermediate=False
    )
    return np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)


def accuracy(y: Arr, pred: Arr) -> float:
    return float(np.mean(np.asarray(y) == np.asarray(pred)))


def one_vs_rest_macro_auc(y: Arr, p: Arr) -> float:
    """Mean over classes k of the AUC of ``p[:, k]`` for ``y == k`` (absent classes skipped)."""
    y, p = np.asarray(y), np.asarray(p, np.float64)
    return float(np.nanmean([auc(y == k, p[:, k]) for k in range(p.shape[1])]))


def confusion_matrix(y: Arr, pred: Arr, k: int) -> list[list[int]]:
    """``k`` x ``k`` counts, rows = true class, columns = predicted class."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    m = sk_confusion_matrix(np.asarray(y, np.int64), np.asarray(pred, np.int64), labels=range(k))
    return [[int(v) for v in row] for row in m]


def _counts(y: NDArray[np.bool_], pred: NDArray[np.bool_]) -> Counts:
    return {
        "tp": int((pred & y).sum()),
        "tn": int((~pred & ~y).sum()),
        "fp": int((pred & ~y).sum()),
        "fn": int((~pred & y).sum()),
    }


def _rates(c: Counts) -> dict[str, float]:
    n = c["tp"] + c["tn"] + c["fp"] + c["fn"]
    pos, neg = c["tp"] + c["fn"], c["tn"] + c["fp"]
    return {
        "accuracy": (c["tp"] + c["tn"]) / max(n, 1),
        "sensitivity": c["tp"] / pos if pos else NAN,
        "specificity": c["tn"] / neg if neg else NAN,
    }


def operating_point(y: Arr, s: Arr, threshold: float) -> OperatingPoint:
    c = _counts(np.asarray(y).astype(bool), np.asarray(s) >= threshold)
    r = _rates(c)
    return {
        "threshold": _round(float(threshold)),
        "sensitivity": _round(r["sensitivity"]),
        "specificity": _round(r["specificity"]),
        "accuracy": _round(r["accuracy"]),
        **c,
    }


# ------------------------------------------------------------------------ bootstrap


def resample_indices(
    y: Arr, *, n_boot: int, seed: int, stratified: bool
) -> Iterator[NDArray[np.intp]]:
    """Case resamples with replacement; stratified keeps each class's count, so every
    resample holds every class."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    if stratified:
        classes = [np.flatnonzero(y == c) for c in np.unique(y)]
        for _ in range(n_boot):
            yield np.concatenate([rng.choice(c, size=c.size, replace=True) for c in classes])
    else:
        for _ in range(n_boot):
            yield rng.integers(0, len(y), len(y))


def _estimate(value: float, samples: list[float], n: int) -> Estimate:
    arr = np.asarray(samples, np.float64)
    arr = arr[np.isfinite(arr)]
    lo, hi = (float(v) for v in np.percentile(arr, [2.5, 97.5])) if arr.size else (NAN, NAN)
    low, high = _round(lo), _round(hi)
    return {"value": _round(value), "ci95": [low, high], "ci_low": low, "ci_high": high, "n": n}


def bootstrap_ci(
    score: Score, y: Arr, s: Arr, *, n_boot: int = 1000, seed: int = 0, stratified: bool = False
) -> Estimate:
    """``score(y, s)`` and its 95% percentile interval over ``n_boot`` case resamples
    (resamples where the score is undefined, NaN, are left out)."""
    y, s = np.asarray(y), np.asarray(s)
    if y.size == 0:
        return _estimate(NAN, [], 0)
    samples = [
        score(y[i], s[i])
        for i in resample_indices(y, n_boot=n_boot, seed=seed, stratified=stratified)
    ]
    return _estimate(score(y, s), samples, int(y.size))


def _mean_of_scores(_y: Arr, s: Arr) -> float:
    return float(np.mean(s))


def proportion_ci(hits: Arr, *, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """The share of true values in ``hits`` and its bootstrap interval."""
    h = np.asarray(hits, np.float64)
    return bootstrap_ci(_mean_of_scores, np.zeros(h.size), h, n_boot=n_boot, seed=seed)


def screen_summary(
    y: Arr, p: Arr, threshold: float, *, n_boot: int = 1000, seed: int = 0
) -> ScreenSummary:
    """Accuracy, sensitivity and specificity at ``threshold`` and the AUC, each with its 95%
    interval over the same (unstratified) resamples, and the confusion counts."""
    yb = np.asarray(y).astype(bool)
    p = np.asarray(p, np.float64)
    keys = ("accuracy", "sensitivity", "specificity", "auc")
    samples: dict[str, list[float]] = {k: [] for k in keys}
    for i in resample_indices(yb, n_boot=n_boot, seed=seed, stratified=False):
        rates = _rates(_counts(yb[i], p[i] >= threshold))
        for k in keys[:3]:
            samples[k].append(rates[k])
        samples["auc"].append(auc(yb[i], p[i]))
    counts = _counts(yb, p >= threshold)
    point = {**_rates(counts), "auc": auc(yb, p)}
    n = int(yb.size)
    return {
        "accuracy": _estimate(point["accuracy"], samples["accuracy"], n),
        "sensitivity": _estimate(point["sensitivity"], samples["sensitivity"], n),
        "specificity": _estimate(point["specificity"], samples["specificity"], n),
        "auc": _estimate(point["auc"], samples["auc"], n),
        "counts": counts,
    }


# ------------------------------------------------------------------------ thresholds


def threshold_for_sensitivity(y: Arr, p: Arr, target: float = 0.9) -> float:
    """The highest threshold whose sensitivity on (y, p) is at least ``target`` (0.5 when
    there is no positive)."""
    pos = np.sort(np.asarray(p, np.float64)[np.asarray(y).astype(bool)])
    if len(pos) == 0:
        return 0.5
    # Flag at least ceil(target * n) positives: threshold = the k-th largest positive score.
    k = math.ceil(target * len(pos))
    return float(pos[len(pos) - k])


def youden_threshold(y: Arr, s: Arr) -> float:
    """The threshold maximising sensitivity + specificity - 1 (Youden's J), placed midway
    between neighbouring distinct scores; the lowest such threshold on ties."""
    yb = np.asarray(y).astype(bool)
    s = np.asarray(s, np.float64)
    cand = np.unique(s)
    if cand.size == 1:
        return float(cand[0])
    mids = (cand[:-1] + cand[1:]) / 2.0
    pos, neg = np.sort(s[yb]), np.sort(s[~yb])
    tp = pos.size - np.searchsorted(pos, mids, side="left")
    tn = np.searchsorted(neg, mids, side="left")
    j = tp / max(pos.size, 1) + tn / max(neg.size, 1) - 1
    return float(mids[int(np.argmax(j))])


# ------------------------------------------------------------------------ calibration


def softmax(z: Arr) -> FloatArr:
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: FloatArr = e / e.sum(axis=1, keepdims=True)
    return out


def nll(logits: Arr, y: Arr, temperature: float) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / temperature)."""
    p = softmax(np.asarray(logits) / temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), np.asarray(y)], 1e-12, 1.0))))


def fit_temperature(logits: Arr, y: Arr) -> float:
    """Temperature minimising the negative log-likelihood (golden-section search on log T
    over 0.05..20)."""
    g = (np.sqrt(5) - 1) / 2
    a, b = np.log(0.05), np.log(20.0)
    c, d = b - g * (b - a), a + g * (b - a)
    for _ in range(80):
        if nll(logits, y, float(np.exp(c))) < nll(logits, y, float(np.exp(d))):
            b = d
        else:
            a = c
        c, d = b - g * (b - a), a + g * (b - a)
    return float(np.exp((a + b) / 2))


def reliability(y: Arr, p: Arr, bins: int = 10) -> tuple[float, list[ReliabilityBin]]:
    """Expected calibration error of P(class 1) over ``bins`` equal-width bins ([lo, hi),
    the last one closed) and the table of the non-empty bins."""
    y = np.asarray(y, np.float64)
    p = np.asarray(p, np.float64)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    table: list[ReliabilityBin] = []
    for i in range(bins):
        m = (p >= edges[i]) & ((p < edges[i + 1]) if i < bins - 1 else (p <= 1.0))
        if not m.any():
            continue
        conf, freq = float(p[m].mean()), float(y[m].mean())
        ece += float(m.mean()) * abs(conf - freq)
        table.append(
            {
                "lo": float(edges[i]),
                "hi": float(edges[i + 1]),
                "conf": conf,
                "freq": freq,
                "n": int(m.sum()),
            }
        )
    return ece, table


def _round(v: float) -> float:
    return round(float(v), 4) if math.isfinite(v) else NAN
