"""Metrics with bootstrap confidence intervals, thresholds and calibration (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArr = NDArray[np.float64]


def roc_auc(y: NDArray[Any], s: NDArray[Any]) -> float:
    """Mann-Whitney AUC with ties counted half; NaN when one class is missing."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def roc_curve(y: NDArray[Any], s: NDArray[Any]) -> tuple[FloatArr, FloatArr]:
    """(false positive rate, true positive rate) over all thresholds."""
    y = np.asarray(y).astype(bool)
    order = np.argsort(-np.asarray(s, np.float64), kind="mergesort")
    ys = y[order]
    tpr = np.concatenate([[0.0], np.cumsum(ys) / max(int(ys.sum()), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(~ys) / max(int((~ys).sum()), 1)])
    return fpr, tpr


def binary_stats(y: NDArray[Any], p: NDArray[Any], threshold: float) -> dict[str, float]:
    y = np.asarray(y).astype(bool)
    pred = np.asarray(p) >= threshold
    tp = int((pred & y).sum())
    tn = int((~pred & ~y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    nan = float("nan")
    return {
        "accuracy": (tp + tn) / max(len(y), 1),
        "sensitivity": tp / (tp + fn) if tp + fn else nan,
        "specificity": tn / (tn + fp) if tn + fp else nan,
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
    }


def bootstrap(
    y: NDArray[Any],
    p: NDArray[Any],
    threshold: float,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Point estimate and percentile 95% CI of accuracy, sensitivity, specificity, AUC."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, np.float64)
    rng = np.random.default_rng(seed)
    point = binary_stats(y, p, threshold)
    point_auc = roc_auc(y, p)
    keys = ("accuracy", "sensitivity", "specificity", "auc")
    samples: dict[str, list[float]] = {k: [] for k in keys}
    n = len(y)
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        st = binary_stats(y[idx], p[idx], threshold)
        for k in keys[:3]:
            samples[k].append(st[k])
        samples["auc"].append(roc_auc(y[idx], p[idx]))
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        arr = np.array(samples[k], np.float64)
        arr = arr[np.isfinite(arr)]
        value = point_auc if k == "auc" else float(point[k])
        lo, hi = np.percentile(arr, [2.5, 97.5]) if len(arr) else (np.nan, np.nan)
        out[k] = {"value": _r(value), "ci95": [_r(float(lo)), _r(float(hi))]}
    out["counts"] = {k: float(point[k]) for k in ("tp", "tn", "fp", "fn")}
    return out


def auc_ci(y: NDArray[Any], s: NDArray[Any], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    y = np.asarray(y).astype(int)
    s = np.asarray(s, np.float64)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        vals.append(roc_auc(y[idx], s[idx]))
    arr = np.array(vals)
    arr = arr[np.isfinite(arr)]
    lo, hi = np.percentile(arr, [2.5, 97.5]) if len(arr) else (np.nan, np.nan)
    return {"value": _r(roc_auc(y, s)), "ci95": [_r(float(lo)), _r(float(hi))]}


def proportion_ci(hits: NDArray[Any], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    h = np.asarray(hits, np.float64)
    rng = np.random.default_rng(seed)
    if len(h) == 0:
        return {"value": float("nan"), "ci95": [float("nan"), float("nan")], "n": 0}
    means = [h[rng.integers(0, len(h), len(h))].mean() for _ in range(n_boot)]
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"value": _r(float(h.mean())), "ci95": [_r(float(lo)), _r(float(hi))], "n": len(h)}


def threshold_for_sensitivity(y: NDArray[Any], p: NDArray[Any], target: float = 0.9) -> float:
    """The highest threshold whose sensitivity on (y, p) is at least ``target``."""
    y = np.asarray(y).astype(bool)
    pos = np.sort(np.asarray(p, np.float64)[y])
    if len(pos) == 0:
        return 0.5
    # Flag at least ceil(target * n) positives: threshold = the k-th largest positive score.
    k = int(np.ceil(target * len(pos)))
    return float(pos[len(pos) - k])


def softmax(z: NDArray[Any]) -> FloatArr:
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: FloatArr = e / e.sum(axis=1, keepdims=True)
    return out


def nll(logits: NDArray[Any], y: NDArray[Any], temperature: float) -> float:
    p = softmax(np.asarray(logits) / temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), np.asarray(y)], 1e-12, 1.0))))


def fit_temperature(logits: NDArray[Any], y: NDArray[Any]) -> float:
    """Temperature minimising the negative log-likelihood (golden-section on log T)."""
    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    for _ in range(80):
        if nll(logits, y, float(np.exp(c))) < nll(logits, y, float(np.exp(d))):
            b = d
        else:
            a = c
        c, d = b - g * (b - a), a + g * (b - a)
    return float(np.exp((a + b) / 2))


def reliability(
    y: NDArray[Any], p: NDArray[Any], bins: int = 10
) -> tuple[float, list[dict[str, float]]]:
    """Expected calibration error of P(class 1) and the per-bin table."""
    y = np.asarray(y, np.float64)
    p = np.asarray(p, np.float64)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    table = []
    for i in range(bins):
        m = (p >= edges[i]) & ((p < edges[i + 1]) if i < bins - 1 else (p <= 1.0))
        if not m.any():
            continue
        conf, acc = float(p[m].mean()), float(y[m].mean())
        ece += m.mean() * abs(conf - acc)
        table.append(
            {
                "lo": float(edges[i]),
                "hi": float(edges[i + 1]),
                "conf": conf,
                "freq": acc,
                "n": float(m.sum()),
            }
        )
    return float(ece), table


def _r(v: float) -> float:
    return float(round(v, 4)) if np.isfinite(v) else float("nan")
