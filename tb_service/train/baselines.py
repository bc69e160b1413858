"""Shortcut baselines on the same splits as the networks (scikit-learn, scikit-image; no TF).

What trivial features predict tells how much a network's AUC can be trusted:
* Kermany: the original image size and aspect ratio alone (sign fixed on ``train``);
* NIH: a 16-bin intensity histogram + logistic regression;
* HOG (raw 64x64 thumbnail) + logistic regression, within and across datasets;
* the same histogram computed on the network's preprocessed input, to show whether the
  preprocessing hides the intensity shortcut.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from tb_service.train.cache import KER, NIH, ChestCache
from tb_service.train.metrics import auc_ci, roc_auc


def _hog(raw: NDArray[np.uint8]) -> NDArray[np.float32]:
    from skimage.feature import hog

    return np.stack(
        [
            hog(im, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2)).astype(
                np.float32
            )
            for im in raw
        ]
    )


def raw_thumbnails(c: ChestCache, side: int = 128) -> NDArray[np.uint8]:
    """Raw (un-preprocessed) squashed thumbnails, re-read in the cache's row order."""
    import cv2

    from shared.imaging import decode_image, to_uint8
    from tb_service.train.cache import chest_records

    recs = chest_records()
    if [f"{r.dataset}/{r.path.name}" for r in recs] != [str(p) for p in c.path]:
        raise RuntimeError("records and cache disagree; rebuild the cache")
    return np.stack(
        [
            cv2.resize(
                to_uint8(decode_image(r.path.read_bytes())),
                (side, side),
                interpolation=cv2.INTER_AREA,
            )
            for r in recs
        ]
    )


def _logreg(
    x_train: NDArray[Any], y_train: NDArray[Any], x_test: NDArray[Any]
) -> NDArray[np.float64]:
    """P(abnormal) on ``x_test`` of a standardised logistic regression (C = 0.1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    clf.fit(x_train, y_train)
    out: NDArray[np.float64] = clf.predict_proba(x_test)[:, 1]
    return out


def _signed_feature_auc(
    train_feature: NDArray[Any],
    train_y: NDArray[Any],
    test_feature: NDArray[Any],
    test_y: NDArray[Any],
) -> dict[str, Any]:
    """Test AUC of one feature, its direction fixed on ``train``."""
    sign = 1.0 if roc_auc(train_y, train_feature) >= 0.5 else -1.0
    res: dict[str, Any] = {**auc_ci(test_y, sign * test_feature)}
    res["direction"] = "larger = abnormal" if sign > 0 else "smaller = abnormal"
    return res


def input_histogram(x: NDArray[Any]) -> NDArray[np.float32]:
    """16-bin histogram of the z-scored network input over [-3, 3]."""
    flat = np.clip(x.reshape(len(x), -1).astype(np.float32), -3, 2.999)
    bins = ((flat + 3.0) / 6.0 * 16).astype(np.int64)
    counts = np.stack([np.bincount(b, minlength=16) for b in bins]).astype(np.float32)
    out: NDArray[np.float32] = counts / counts.sum(axis=1, keepdims=True)
    return out


def shortcut_baselines(c: ChestCache) -> dict[str, Any]:
    """Test AUCs (95% bootstrap CIs) of the shortcut features, trained on ``train`` only."""
    res: dict[str, Any] = {}
    hog = _hog(c.raw)
    hist_in = input_histogram(c.x)

    # Kermany size / aspect ratio (the source's original pixels, as labels.csv records them).
    train, test = c.where("train", [KER]), c.where("test", [KER])
    w, h = c.source_size[:, 0].astype(float), c.source_size[:, 1].astype(float)
    y = c.abnormal
    res["kermany_original_area"] = _signed_feature_auc(
        (w * h)[train], y[train], (w * h)[test], y[test]
    )
    res["kermany_original_width"] = _signed_feature_auc(w[train], y[train], w[test], y[test])
    res["kermany_aspect_ratio"] = _signed_feature_auc(
        (w / h)[train], y[train], (w / h)[test], y[test]
    )
    # Histogram shortcut: raw image vs the preprocessed network input.
    for ds in (NIH, KER):
        train, test = c.where("train", [ds]), c.where("test", [ds])
        key = "nih" if ds == NIH else "kermany"
        res[f"{key}_raw_histogram16_logreg"] = auc_ci(
            y[test], _logreg(c.hist[train], y[train], c.hist[test])
        )
        res[f"{key}_input_histogram16_logreg"] = auc_ci(
            y[test], _logreg(hist_in[train], y[train], hist_in[test])
        )
        res[f"{key}_hog_logreg"] = auc_ci(y[test], _logreg(hog[train], y[train], hog[test]))
    # A finer HOG (128 px thumbnails, 8 px cells: 8,100 features).
    hog128 = _hog(raw_thumbnails(c, 128))
    for ds in (NIH, KER):
        train, test = c.where("train", [ds]), c.where("test", [ds])
        key = "nih" if ds == NIH else "kermany"
        res[f"{key}_hog128_logreg"] = auc_ci(
            y[test], _logreg(hog128[train], y[train], hog128[test])
        )
    both = [NIH, KER]
    train, test = c.where("train", both), c.where("test", both)
    res["both_hog_logreg"] = auc_ci(y[test], _logreg(hog[train], y[train], hog[test]))
    # Across datasets.
    train, test = c.where("train", [NIH]), c.where("test", [KER])
    res["hog_nih_to_kermany"] = auc_ci(y[test], _logreg(hog[train], y[train], hog[test]))
    train, test = c.where("train", [KER]), c.where("test", [NIH])
    res["hog_kermany_to_nih"] = auc_ci(y[test], _logreg(hog[train], y[train], hog[test]))
    # TBX11K vs the chest test sets' normals: can a HOG model trained on the chest train
    # sets tell TBX11K apart just by source? (share of TBX11K flagged at the 0.5 level)
    train = c.where("train", both)
    tb = c.dataset == "tbx11k"
    if tb.any():
        p = _logreg(hog[train], y[train], hog[tb])
        res["hog_tbx11k_flagged_share_at_0.5"] = float(round(float((p >= 0.5).mean()), 4))
    return res
