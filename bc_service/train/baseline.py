"""The whole-image baseline for the view model: HOG (128 x 128) + logistic regression, on
the same mini-mias splits (scikit-image, scikit-learn; no TensorFlow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bc_service.train import data as tdata
from bc_service.train import metrics as tm

SPLITS = ("train", "val", "test")
TASKS = (
    # task, positive labels, labels kept
    ("normal_vs_abnormal", ("benign", "malignant"), ("normal", "benign", "malignant")),
    ("benign_vs_malignant", ("malignant",), ("benign", "malignant")),
)


def _hog(path: Path) -> NDArray[Any]:
    import cv2
    from skimage.feature import hog

    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise FileNotFoundError(f"cannot read {path}")
    gray = cv2.resize(gray, (128, 128), interpolation=cv2.INTER_AREA)
    return np.asarray(hog(gray, orientations=9, pixels_per_cell=(16, 16), cells_per_block=(2, 2)))


def hog_baseline(
    data_dir: Path,
) -> tuple[dict[str, Any], dict[str, tuple[NDArray[Any], NDArray[Any]]]]:
    """Per task: the C chosen on val and the test AUC (95% CI); and the test (labels,
    scores) for the ROC plots."""
    from sklearn.linear_model import LogisticRegression

    root = data_dir / "mini-mias"
    cases = tdata.read_mias(root)
    x = {s: np.stack([_hog(root / c.path) for c in cases if c.split == s]) for s in SPLITS}
    labels = {s: np.array([c.label for c in cases if c.split == s]) for s in SPLITS}
    results: dict[str, Any] = {}
    scores: dict[str, tuple[NDArray[Any], NDArray[Any]]] = {}
    for task, positive, kept in TASKS:
        keep = {s: np.isin(labels[s], kept) for s in SPLITS}
        y = {s: np.isin(labels[s][keep[s]], positive).astype(int) for s in SPLITS}

        def fit(c: float, keep: Any = keep, y: Any = y) -> Any:
            return LogisticRegression(C=c, max_iter=3000).fit(x["train"][keep["train"]], y["train"])

        best_auc, best_c = -1.0, 1.0
        for c in (0.001, 0.01, 0.1, 1.0, 10.0):
            val_auc = tm.auc(y["val"], fit(c).decision_function(x["val"][keep["val"]]))
            if val_auc > best_auc:
                best_auc, best_c = val_auc, c
        test_scores = fit(best_c).decision_function(x["test"][keep["test"]])
        results[task] = {"C": best_c, "test_auc": tm.bootstrap_ci(tm.auc, y["test"], test_scores)}
        scores[task] = (y["test"], np.asarray(test_scores))
    return results, scores
