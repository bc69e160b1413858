"""mammo-density/1: the breast's background tissue (mini-MIAS F fatty, G fatty-glandular,
D dense-glandular) from its brightness distribution and texture; multinomial logistic
regression chosen and measured by the same patient-level 5-fold cross-validation as the
screen, accuracy and quadratic-weighted kappa with 95% bootstrap CIs, the fixed test split
once at the end. TensorFlow-free."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from bc_service.pipeline import evidence as ev
from bc_service.train import metrics as tm
from bc_service.train.cohort import Cohort
from bc_service.train.folds import N_FOLDS
from shared.train import evaluation

C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)


def _fit(x: NDArray[np.float64], y: NDArray[np.int64], c: float) -> tuple[Any, Any]:
    """(W (F, 3), b (3,)) on the raw features of a multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression

    mu, sd = x.mean(0), x.std(0) + 1e-9
    lr = LogisticRegression(C=c, max_iter=5000).fit((x - mu) / sd, y)
    w = (lr.coef_ / sd).T
    b = lr.intercept_ - (lr.coef_ * mu / sd).sum(axis=1)
    return w, b


def _predict(x: NDArray[np.float64], wb: tuple[Any, Any]) -> NDArray[np.float64]:
    return evaluation.softmax(x @ wb[0] + wb[1])


def kappa(y: NDArray[Any], pred: NDArray[Any]) -> float:
    from sklearn.metrics import cohen_kappa_score

    if len(np.unique(np.concatenate([y, pred]))) < 2:
        return float("nan")
    return float(cohen_kappa_score(y, pred, weights="quadratic"))


def _accuracy(y: NDArray[Any], pred: NDArray[Any]) -> float:
    return float(np.mean(y == pred))


def _figures(y: NDArray[np.int64], pred: NDArray[np.int64]) -> dict[str, Any]:
    return {
        "accuracy": evaluation.bootstrap_ci(_accuracy, y, pred, n_boot=tm.N_BOOT),
        "quadratic_kappa": evaluation.bootstrap_ci(kappa, y, pred, n_boot=tm.N_BOOT),
        "confusion": tm.confusion(y, pred, 3),
        "n": len(y),
    }


def density_search(cohort: Cohort) -> dict[str, Any]:
    x = cohort.density_inputs()
    y = np.array([ev.DENSITY_LABELS.index(t) for t in cohort.tissue], np.int64)
    fold = cohort.fold
    rows, oof = [], {}
    for c in C_GRID:
        probs = np.zeros((len(y), 3))
        for k in range(N_FOLDS):
            probs[fold == k] = _predict(x[fold == k], _fit(x[fold != k], y[fold != k], c))
        pred = probs.argmax(1)
        oof[c] = probs
        rows.append(
            {
                "C": c,
                "oof_accuracy": round(_accuracy(y, pred), 4),
                "oof_kappa": round(kappa(y, pred), 4),
            }
        )
    best = max(rows, key=lambda r: (r["oof_kappa"], -r["C"]))
    c = float(best["C"])
    pred = oof[c].argmax(1)
    majority = np.full_like(y, int(np.bincount(y).argmax()))
    fit_on, test = cohort.split != "test", cohort.split == "test"
    test_pred = _predict(x[test], _fit(x[fit_on], y[fit_on], c)).argmax(1)
    w, b = _fit(x, y, c)
    # Both breasts of a woman: how often their densities agree (labels, and the OOF guess).
    partner = cohort.partner
    return {
        "labels": ev.DENSITY_LABELS,
        "counts": {lab: int((y == i).sum()) for i, lab in enumerate(ev.DENSITY_LABELS)},
        "search": rows,
        "C": c,
        "oof": _figures(y, pred),
        "oof_majority_class_accuracy": round(_accuracy(y, majority), 4),
        "label_agreement_between_breasts": round(float(np.mean(y == y[partner])), 4),
        "test": _figures(y[test], test_pred),
        "weights": {"W": np.asarray(w).tolist(), "b": np.asarray(b).tolist()},
    }
