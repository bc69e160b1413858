"""Metrics with bootstrap confidence intervals, thresholds, and plots (no TensorFlow)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

Arr = NDArray[Any]


def auc(y: Arr, s: Arr) -> float:
    """ROC AUC by the rank statistic (ties count one half); NaN when one class is absent."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(order.size, np.float64)
    allv = np.concatenate([pos, neg])[order]
    # average ranks over ties
    i = 0
    while i < allv.size:
        j = i
        while j + 1 < allv.size and allv[j + 1] == allv[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    r_pos = ranks[: pos.size].sum()
    return float((r_pos - pos.size * (pos.size + 1) / 2.0) / (pos.size * neg.size))


def bootstrap_ci(
    fn: Callable[[Arr, Arr], float],
    y: Arr,
    s: Arr,
    *,
    n: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Point estimate and percentile bootstrap CI (case resampling, stratified by class so
    every resample holds both classes)."""
    y = np.asarray(y)
    s = np.asarray(s)
    rng = np.random.default_rng(seed)
    point = fn(y, s)
    classes = [np.flatnonzero(y == c) for c in np.unique(y)]
    stats = []
    for _ in range(n):
        idx = np.concatenate([rng.choice(c, size=c.size, replace=True) for c in classes])
        v = fn(y[idx], s[idx])
        if not np.isnan(v):
            stats.append(v)
    if not stats:
        return {"value": point, "ci_low": float("nan"), "ci_high": float("nan"), "n": int(y.size)}
    lo, hi = np.percentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {
        "value": round(float(point), 4),
        "ci_low": round(float(lo), 4),
        "ci_high": round(float(hi), 4),
        "n": int(y.size),
    }


def accuracy(y: Arr, pred: Arr) -> float:
    return float(np.mean(np.asarray(y) == np.asarray(pred)))


def youden_threshold(y: Arr, s: Arr) -> float:
    """The score threshold maximising sensitivity + specificity - 1 (midpoint between
    neighbouring scores)."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    cand = np.unique(s)
    if cand.size == 1:
        return float(cand[0])
    mids = (cand[:-1] + cand[1:]) / 2.0
    best, best_t = -1.0, float(mids[0])
    for t in mids:
        pred = s >= t
        sens = (pred & y).sum() / max(y.sum(), 1)
        spec = (~pred & ~y).sum() / max((~y).sum(), 1)
        if sens + spec - 1 > best:
            best, best_t = sens + spec - 1, float(t)
    return best_t


def binary_at(y: Arr, s: Arr, t: float) -> dict[str, float]:
    y = np.asarray(y).astype(bool)
    pred = np.asarray(s) >= t
    tp = int((pred & y).sum())
    tn = int((~pred & ~y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    return {
        "threshold": round(float(t), 4),
        "sensitivity": round(tp / max(tp + fn, 1), 4),
        "specificity": round(tn / max(tn + fp, 1), 4),
        "accuracy": round((tp + tn) / max(y.size, 1), 4),
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
    }


def confusion(y: Arr, pred: Arr, k: int) -> list[list[int]]:
    m = np.zeros((k, k), int)
    for a, b in zip(np.asarray(y), np.asarray(pred), strict=True):
        m[int(a), int(b)] += 1
    return [[int(v) for v in row] for row in m]


def roc_points(y: Arr, s: Arr) -> tuple[Arr, Arr]:
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    ts = np.concatenate([[np.inf], np.sort(np.unique(s))[::-1], [-np.inf]])
    tpr = np.array([((s >= t) & y).sum() / max(y.sum(), 1) for t in ts])
    fpr = np.array([((s >= t) & ~y).sum() / max((~y).sum(), 1) for t in ts])
    return fpr, tpr


def plot_rocs(curves: dict[str, tuple[Arr, Arr]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, (y, s) in curves.items():
        fpr, tpr = roc_points(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(y, s):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_confusion(m: list[list[int]], labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = np.asarray(m)
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.imshow(arr, cmap="Blues")
    for i in range(arr.shape[0]):
        for j in range(arr.shape[1]):
            ax.text(j, i, str(arr[i, j]), ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_history(hist: dict[str, list[float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for k, v in hist.items():
        ax.plot(range(1, len(v) + 1), v, label=k)
    ax.set_xlabel("epoch")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
