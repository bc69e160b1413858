"""mammo-view/2: the per-breast suspicion screen, chosen and measured by patient-level 5-fold
cross-validation over all 161 women of mini-MIAS (both breasts of a woman in one fold), the
HOG baseline in the same folds, Platt calibration and the operating point on the pooled
out-of-fold predictions, and the fixed test split reported once at the end. TensorFlow-free
(the export is :mod:`bc_service.train.publish_screen`'s)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bc_service.pipeline import evidence as ev
from bc_service.train import metrics as tm
from bc_service.train.baseline import _hog
from bc_service.train.cohort import LESION_CLASSES, Cohort
from bc_service.train.folds import N_FOLDS
from shared.train import evaluation

log = logging.getLogger("irmi.bc.train")

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
HOG_C_GRID = (0.001, 0.01, 0.1, 1.0)
SHOW_MALIGNANCY_AT = 0.70  # the CI lower bound the benign-vs-malignant AUC must clear
Arr = NDArray[np.float64]


def fit_logistic(x: Arr, y: NDArray[Any], c: float) -> tuple[Arr, float]:
    """Class-balanced L2 logistic regression on standardised features, returned as (w, b)
    on the raw features."""
    from sklearn.linear_model import LogisticRegression

    mu, sd = x.mean(0), x.std(0) + 1e-9
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    lr.fit((x - mu) / sd, y)
    w = np.asarray(lr.coef_[0] / sd, np.float64)
    return w, float(lr.intercept_[0] - np.sum(lr.coef_[0] * mu / sd))


def oof_logits(
    x: Arr, y: NDArray[Any], fold: NDArray[np.int64], c: float, keep: NDArray[np.bool_]
) -> Arr:
    """Out-of-fold linear scores of every row: each fold scored by a model fitted on the
    other folds' rows in ``keep``."""
    out = np.zeros(len(x))
    for k in range(N_FOLDS):
        fit_on = (fold != k) & keep
        w, b = fit_logistic(x[fit_on], y[fit_on], c)
        out[fold == k] = x[fold == k] @ w + b
    return out


def platt(logits: Arr, y: NDArray[Any]) -> tuple[float, float]:
    """P(y) = sigmoid(a * logit + b), fitted (unregularised, unweighted) on OOF logits."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6, max_iter=5000).fit(logits[:, None], y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def sigmoid(z: Arr) -> Arr:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), np.float64)


def _choose(
    x: Arr,
    y: NDArray[Any],
    fold: NDArray[np.int64],
    keep: NDArray[np.bool_],
    grid: tuple[float, ...],
) -> tuple[float, list[dict[str, Any]]]:
    rows = []
    for c in grid:
        s = oof_logits(x, y, fold, c, keep)
        rows.append({"C": c, "oof_auc": round(tm.auc(y[keep], s[keep]), 4)})
    best = max(rows, key=lambda r: (r["oof_auc"], -r["C"]))
    return float(best["C"]), rows


def _hog_features(cohort: Cohort, data_dir: Any) -> Arr:
    root = data_dir / "mini-mias"
    return np.stack([_hog(root / p.case.path) for p in cohort.items]).astype(np.float64)


def _point(y: NDArray[Any], p: Arr, threshold: float) -> dict[str, Any]:
    summary = evaluation.screen_summary(y, p, threshold, n_boot=tm.N_BOOT)
    return {**summary, "threshold": round(threshold, 4)}


def screen_search(cohort: Cohort, data_dir: Any) -> dict[str, Any]:
    """Everything the card and report of mammo-view/2 need; weights included."""
    y = cohort.abnormal
    fold = cohort.fold
    every = np.ones(len(y), bool)
    x_bi = cohort.view_inputs(bilateral=True)
    x_uni = x_bi[:, : ev.N_OWN]
    variants = {"bilateral": x_bi, "unilateral": x_uni}
    search: dict[str, Any] = {}
    chosen: dict[str, float] = {}
    logits: dict[str, Arr] = {}
    for name, x in variants.items():
        chosen[name], search[name] = _choose(x, y, fold, every, C_GRID)
        logits[name] = oof_logits(x, y, fold, chosen[name], every)
        log.info("%s: C %s, OOF AUC %.3f", name, chosen[name], tm.auc(y, logits[name]))
    hog = _hog_features(cohort, data_dir)
    hog_c, search["hog"] = _choose(hog, y, fold, every, HOG_C_GRID)
    hog_logits = oof_logits(hog, y, fold, hog_c, every)
    # benign vs malignant among the abnormal images, on the breast's own statistics
    lesion = y.astype(bool)
    ym = cohort.malignant
    mal_c, search["malignancy"] = _choose(x_uni, ym, fold, lesion, C_GRID)
    mal_logits = oof_logits(x_uni, ym, fold, mal_c, lesion)
    hog_mal_c, search["hog_malignancy"] = _choose(hog, ym, fold, lesion, HOG_C_GRID)
    hog_mal = oof_logits(hog, ym, fold, hog_mal_c, lesion)

    calib = {name: platt(logits[name], y) for name in variants}
    prob = {name: sigmoid(calib[name][0] * logits[name] + calib[name][1]) for name in variants}
    points = {}
    for name in variants:
        thr = tm.youden_threshold(y, prob[name])
        points[name] = _point(y, prob[name], thr)
    # per woman: the exam is the worse breast, read at the bilateral point
    women = cohort.women
    ids = np.unique(women)
    exam_p = np.array([prob["bilateral"][women == w].max() for w in ids])
    exam_y = np.array([y[women == w].max() for w in ids])
    exam = _point(exam_y, exam_p, points["bilateral"]["threshold"])
    flagged = prob["bilateral"] >= points["bilateral"]["threshold"]
    per_class = {}
    for cls in LESION_CLASSES:
        has = np.array([cls in c for c in cohort.classes])
        hits = flagged[has].astype(float)
        per_class[cls] = {
            "n_images": int(has.sum()),
            "flagged": int(hits.sum()),
            "sensitivity": tm.proportion_ci(hits) if has.any() else None,
        }
    ece = {}
    for name in variants:
        raw = sigmoid(logits[name])
        ece[name] = {
            "before_platt": round(evaluation.reliability(y, raw)[0], 4),
            "after_platt": round(evaluation.reliability(y, prob[name])[0], 4),
        }
    mal_auc = tm.bootstrap_ci(tm.auc, ym[lesion], mal_logits[lesion])
    res: dict[str, Any] = {
        "n_images": len(y),
        "n_women": len(ids),
        "prevalence_abnormal": round(float(y.mean()), 4),
        "search": search,
        "C": {**chosen, "hog": hog_c, "malignancy": mal_c, "hog_malignancy": hog_mal_c},
        "oof": {
            "auc_normal_vs_abnormal": {
                "bilateral": tm.bootstrap_ci(tm.auc, y, logits["bilateral"]),
                "unilateral": tm.bootstrap_ci(tm.auc, y, logits["unilateral"]),
                "hog": tm.bootstrap_ci(tm.auc, y, hog_logits),
            },
            "auc_benign_vs_malignant": {
                "model": mal_auc,
                "hog": tm.bootstrap_ci(tm.auc, ym[lesion], hog_mal[lesion]),
            },
            "exam_auc_normal_vs_abnormal": tm.bootstrap_ci(tm.auc, exam_y, exam_p),
            "operating_point": points,
            "exam_at_bilateral_point": exam,
            "per_lesion_class_at_point": per_class,
            "ece": ece,
        },
        "calibration": {
            name: {"a": round(a, 6), "b": round(b, 6)} for name, (a, b) in calib.items()
        },
        "malignancy_shown": bool(mal_auc["ci_low"] >= SHOW_MALIGNANCY_AT),
        "localisation": bilateral_localisation(cohort),
        "oof_predictions": {
            "abnormal": y.tolist(),
            "bilateral": prob["bilateral"].round(5).tolist(),
            "unilateral": prob["unilateral"].round(5).tolist(),
            "hog": hog_logits.round(5).tolist(),
            "malignant": ym.tolist(),
            "malignancy": mal_logits.round(5).tolist(),
        },
    }
    res["test"] = fixed_test(cohort, variants, hog, chosen, hog_c, mal_c, hog_mal_c)
    res["weights"] = final_weights(variants, y, ym, lesion, chosen, mal_c, calib)
    return res


def fixed_test(
    cohort: Cohort,
    variants: dict[str, Arr],
    hog: Arr,
    chosen: dict[str, float],
    hog_c: float,
    mal_c: float,
    hog_mal_c: float,
) -> dict[str, Any]:
    """The chosen recipes fitted on train + val and scored once on the fixed test split."""
    fit_on, test = cohort.split != "test", cohort.split == "test"
    y, ym = cohort.abnormal, cohort.malignant
    out: dict[str, Any] = {"n_images": int(test.sum())}
    for name, x, c in (
        ("bilateral", variants["bilateral"], chosen["bilateral"]),
        ("unilateral", variants["unilateral"], chosen["unilateral"]),
        ("hog", hog, hog_c),
    ):
        w, b = fit_logistic(x[fit_on], y[fit_on], c)
        out[f"auc_normal_vs_abnormal_{name}"] = tm.bootstrap_ci(tm.auc, y[test], x[test] @ w + b)
    lesion = y.astype(bool)
    for name, x, c in (("model", variants["unilateral"], mal_c), ("hog", hog, hog_mal_c)):
        w, b = fit_logistic(x[fit_on & lesion], ym[fit_on & lesion], c)
        t = test & lesion
        out[f"auc_benign_vs_malignant_{name}"] = tm.bootstrap_ci(tm.auc, ym[t], x[t] @ w + b)
    return out


def final_weights(
    variants: dict[str, Arr],
    y: NDArray[Any],
    ym: NDArray[Any],
    lesion: NDArray[np.bool_],
    chosen: dict[str, float],
    mal_c: float,
    calib: dict[str, tuple[float, float]],
) -> dict[str, Any]:
    """The served heads fitted on all 322 images, the OOF Platt maps folded in: columns
    P(abnormal | both breasts), P(abnormal | this breast), P(malignant | a lesion)."""
    n = variants["bilateral"].shape[1]
    cols, biases = [], []
    for name in ("bilateral", "unilateral"):
        w, b = fit_logistic(variants[name], y, chosen[name])
        a, c = calib[name]
        full = np.zeros(n)
        full[: len(w)] = a * w
        cols.append(full)
        biases.append(a * b + c)
    w, b = fit_logistic(variants["unilateral"][lesion], ym[lesion], mal_c)
    full = np.zeros(n)
    full[: len(w)] = w
    cols.append(full)
    biases.append(b)
    return {"W": np.stack(cols, axis=1).tolist(), "b": biases}


@dataclass
class PeakHits:
    """Per located lesion: whether a map's peak inside the breast fell in it, the lesion's
    share of the breast (the chance of that) and its class."""

    hits: list[float] = field(default_factory=list)
    chance: list[float] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)


def peak_hits(cohort: Cohort, map_of: Callable[[int], Arr], min_radius: float = 1.0) -> PeakHits:
    """Where each image's map (half working resolution; ``map_of(i)``, asked only for images
    with a located lesion) peaks inside the breast, against every located lesion (radius at
    least ``min_radius`` half-resolution pixels)."""
    out = PeakHits()
    for i, p in enumerate(cohort.items):
        if not p.lesions_work:
            continue
        m = cohort.maps[i]
        scores = np.where(m.inner, map_of(i), -np.inf)
        r, c = np.unravel_index(int(np.argmax(scores)), scores.shape)
        yy, xx = np.nonzero(m.mask)
        for (lx, ly, lr, _), les in zip(p.lesions_work, p.case.lesions, strict=True):
            x, yv, rad = lx * ev.HALF, ly * ev.HALF, max(lr * ev.HALF, min_radius)
            out.hits.append(float((c - x) ** 2 + (r - yv) ** 2 <= rad**2))
            out.chance.append(
                float(((xx - x) ** 2 + (yy - yv) ** 2 <= rad**2).sum()) / max(len(yy), 1)
            )
            out.classes.append(les.abnormality)
    return out


def bilateral_localisation(cohort: Cohort) -> dict[str, Any]:
    """Does the strongest bilateral difference (this breast brighter than the other at the
    same place) fall inside the lesion? Every located lesion of mini-MIAS (no training
    involved); chance = the lesion's share of the breast."""
    import cv2

    def difference(i: int) -> Arr:
        m, other = cohort.maps[i], cohort.maps[cohort.partner[i]]
        h, w = m.smooth.shape
        there = cv2.resize(other.smooth, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.asarray(m.smooth - there, np.float64)

    found = peak_hits(cohort, difference)
    return {
        "n_lesions": len(found.hits),
        "peak_in_lesion": tm.proportion_ci(np.array(found.hits)),
        "chance_rate": round(float(np.mean(found.chance)), 4) if found.chance else None,
    }
