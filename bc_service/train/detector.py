"""A recipe tried for mammo-view/2 and measured in the same folds, not served: a pixel-level
lesion detector (logistic regression on the evidence channels of each grid point, the other
breast's brightness at the same place and the position) trained on lesion-centred points at
several radii of every located lesion, with and without one round of hard-negative mining; its
top responses join the view statistics. Kept so the search in the card is reproducible.
TensorFlow-free."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from bc_service.pipeline import evidence as ev
from bc_service.train import metrics as tm
from bc_service.train.cohort import Cohort
from bc_service.train.folds import N_FOLDS
from bc_service.train.screen import fit_logistic, oof_logits

STRIDE = 4  # half-resolution pixels between grid points
RADII = (0.25, 0.5, 1.0)  # positives: points within these fractions of the lesion radius
NEGATIVES = 150  # random negatives per image
HARD = 30  # hardest negatives per image added in the mining round


def _points(m: ev.BreastMaps) -> NDArray[np.int64]:
    h, w = m.inner.shape
    yy, xx = np.mgrid[STRIDE // 2 : h : STRIDE, STRIDE // 2 : w : STRIDE]
    keep = m.inner[yy, xx]
    return np.stack([yy[keep], xx[keep]], axis=1).astype(np.int64)


def _inputs(m: ev.BreastMaps, other: ev.BreastMaps, pts: NDArray[np.int64]) -> NDArray[Any]:
    h, w = m.smooth.shape
    there = cv2.resize(other.smooth, (w, h), interpolation=cv2.INTER_LINEAR)
    r, c = pts[:, 0], pts[:, 1]
    contra = (m.smooth - there)[r, c][:, None]
    pos = np.stack([c / max(w, 1), r / max(h, 1)], axis=1)
    return np.concatenate([m.channels[r, c], contra, pos], axis=1).astype(np.float64)


def _targets(p: Any, pts: NDArray[np.int64]) -> tuple[NDArray[Any], NDArray[Any]]:
    """Per point: weight of it as a positive (lesion-centred, several radii), and whether it
    may serve as a negative (away from every lesion); abnormal images without located
    lesions give neither."""
    pos = np.zeros(len(pts))
    neg_ok = np.ones(len(pts), bool)
    if p.case.label != "normal" and not p.lesions_work:
        neg_ok[:] = False
    for lx, ly, lr, _ in p.lesions_work:
        x, y, r = lx * ev.HALF, ly * ev.HALF, max(lr * ev.HALF, 2.0)
        d = np.hypot(pts[:, 1] - x, pts[:, 0] - y)
        for frac in RADII:
            pos += d <= max(frac * r, 2.0)
        neg_ok &= d > 1.5 * r + 4
    return pos, neg_ok


def detector_search(cohort: Cohort, c_view: float) -> dict[str, Any]:
    """OOF AUC of the view model with the detector's responses added, per variant, and the
    localisation of the detector's peak (OOF); the same folds as the screen."""
    n = len(cohort.items)
    pts = [_points(m) for m in cohort.maps]
    xs = [_inputs(cohort.maps[i], cohort.maps[cohort.partner[i]], pts[i]) for i in range(n)]
    tg = [_targets(cohort.items[i], pts[i]) for i in range(n)]
    y = cohort.abnormal
    x_view = cohort.view_inputs(bilateral=True)
    out: dict[str, Any] = {}
    for variant, hard in (("lesion_centred", False), ("lesion_centred_hard_negatives", True)):
        responses = np.zeros((n, 3))
        hits: list[float] = []
        for k in range(N_FOLDS):
            rng = np.random.default_rng(k)
            train = np.flatnonzero(cohort.fold != k)
            w, b = _fit(train, xs, tg, rng, hard)
            for i in np.flatnonzero(cohort.fold == k):
                p = 1.0 / (1.0 + np.exp(-(xs[i] @ w + b)))
                top = np.sort(p)[::-1]
                responses[i] = [top[0], top[: max(1, len(p) // 100)].mean(), p.mean()]
                hits += _peak_hits(cohort.items[i], pts[i], p)
        logits = oof_logits(
            np.hstack([x_view, responses]), y, cohort.fold, c_view, np.ones(n, bool)
        )
        out[variant] = {
            "oof_auc_with_view_statistics": tm.bootstrap_ci(tm.auc, y, logits),
            "oof_auc_detector_max_alone": round(tm.auc(y, responses[:, 0]), 4),
            "peak_in_lesion": tm.proportion_ci(np.array(hits)),
        }
    return out


def _fit(
    train: NDArray[np.int64], xs: list[Any], tg: list[Any], rng: np.random.Generator, hard: bool
) -> tuple[NDArray[Any], float]:
    rows, labels = [], []
    for i in train:
        pos, neg_ok = tg[i]  # a point near the centre counts once per radius it lies within
        rows.append(np.repeat(xs[i], pos.astype(int), axis=0))
        labels.append(np.ones(int(pos.sum())))
        neg = np.flatnonzero(neg_ok)
        pick = rng.choice(neg, min(NEGATIVES, len(neg)), replace=False) if len(neg) else neg
        rows.append(xs[i][pick])
        labels.append(np.zeros(len(pick)))
    x, yy = np.concatenate(rows), np.concatenate(labels)
    w, b = fit_logistic(x, yy, 1.0)
    if hard:
        mined = []
        for i in train:
            neg = np.flatnonzero(tg[i][1])
            if len(neg):
                s = xs[i][neg] @ w + b
                mined.append(xs[i][neg[np.argsort(s)[::-1][:HARD]]])
        extra = np.concatenate(mined)
        w, b = fit_logistic(np.vstack([x, extra]), np.concatenate([yy, np.zeros(len(extra))]), 1.0)
    return w, b


def _peak_hits(p: Any, pts: NDArray[np.int64], prob: NDArray[Any]) -> list[float]:
    if not p.lesions_work:
        return []
    r, c = pts[int(np.argmax(prob))]
    hits = []
    for lx, ly, lr, _ in p.lesions_work:
        x, y, rad = lx * ev.HALF, ly * ev.HALF, max(lr * ev.HALF, 1.0)
        hits.append(float((c - x) ** 2 + (r - y) ** 2 <= rad**2))
    return hits
