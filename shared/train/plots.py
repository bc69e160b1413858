"""PNG figures of evaluation results for model reports: ROC curves, confusion matrices,
training curves and reliability diagrams (curves and tables only, never images from the data).

matplotlib (``train`` extra) is imported on the first figure, so importing this module does
not need it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.train.evaluation import Arr, auc, reliability, roc_curve


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _diagonal(ax: Any) -> None:
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)


def plot_roc(curves: Mapping[str, tuple[Arr, Arr]], path: Path, title: str) -> None:
    """One ROC curve per (labels, scores) pair, its AUC in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    for name, (y, s) in curves.items():
        fpr, tpr = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(y, s):.3f})")
    _diagonal(ax)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    _save(plt, fig, path)


def plot_confusion(
    matrix: Sequence[Sequence[int]], labels: list[str], path: Path, title: str
) -> None:
    """Counts, rows = true class, columns = predicted class (as ``confusion_matrix``)."""
    plt = _pyplot()
    arr = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.imshow(arr, cmap="Blues")
    dark = arr.max() / 2 if arr.size else 0
    for i in range(arr.shape[0]):
        for j in range(arr.shape[1]):
            colour = "white" if arr[i, j] > dark else "black"
            ax.text(j, i, str(int(arr[i, j])), ha="center", va="center", fontsize=9, color=colour)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    _save(plt, fig, path)


def plot_history(panels: Sequence[Mapping[str, Sequence[float]]], path: Path, title: str) -> None:
    """Per-epoch series, one panel per mapping (e.g. losses, then accuracy and AUC)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.3), squeeze=False)
    for ax, series in zip(axes[0], panels, strict=True):
        for name, values in series.items():
            ax.plot(range(1, len(values) + 1), values, label=name)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    _save(plt, fig, path)


def plot_reliability(
    series: Mapping[str, tuple[Arr, Arr]], path: Path, title: str, positive: str = "positive"
) -> None:
    """Reliability diagram (10 bins) per (labels, P(positive)) pair, ECE in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    for name, (y, p) in series.items():
        ece, table = reliability(y, p)
        ax.plot(
            [b["conf"] for b in table],
            [b["freq"] for b in table],
            "o-",
            ms=3,
            label=f"{name} (ECE {ece:.3f})",
        )
    _diagonal(ax)
    ax.set_xlabel(f"predicted P({positive})")
    ax.set_ylabel(f"observed share {positive}")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    _save(plt, fig, path)
