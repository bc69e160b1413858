"""The evaluation half of the CNN lesion-detector experiment (:mod:`bc_service.train.cnn_detector`):
per-image features of the out-of-fold probability maps, the OOF AUCs (alone and with
mammo-view/2's inputs, the screen's C search, paired gains against the served model),
localisation against the chance rate, and the committed markdown record of a run.
TensorFlow-free."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from bc_service.pipeline import evidence as ev
from bc_service.train import metrics as tm
from bc_service.train.cohort import LESION_CLASSES, Cohort
from bc_service.train.folds import N_FOLDS
from bc_service.train.screen import C_GRID, _choose, oof_logits, peak_hits

Arr = NDArray[np.float64]

FEATURES = (
    "max",
    "top1pct_mean",
    "mean",
    "frac_over_half",
    "max_minus_other",
    "top1pct_minus_other",
    "mean_minus_other",
    "frac_minus_other",
    "asym_max",
)


def lesions_half(p: Any) -> list[tuple[float, float, float]]:
    return [
        (lx * ev.HALF, ly * ev.HALF, max(lr * ev.HALF, 2.0)) for lx, ly, lr, _ in p.lesions_work
    ]


# --------------------------------------------------------------------------- features


def _stats(pm: Arr, inner: NDArray[np.bool_]) -> NDArray[np.float64]:
    v = pm[inner] if inner.any() else np.zeros(1)
    top = np.sort(v)[::-1][: max(1, v.size // 100)]
    return np.array([v.max(), top.mean(), v.mean(), float((v > 0.5).mean())])


def image_features(maps: list[Arr], cohort: Cohort) -> Arr:
    """(n, len(FEATURES)) from every image's probability map and its partner's."""
    own = np.stack([_stats(pm, m.inner) for pm, m in zip(maps, cohort.maps, strict=True)])
    rows = []
    for i, pm in enumerate(maps):
        j = cohort.partner[i]
        h, w = pm.shape
        there = cv2.resize(maps[j].astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        inner = cohort.maps[i].inner
        asym = (pm - there)[inner].max() if inner.any() else 0.0
        rows.append([*own[i], *(own[i] - own[j]), asym])
    return np.asarray(rows, np.float64)


def localisation(cohort: Cohort, maps: list[Arr]) -> dict[str, Any]:
    """Does the map's peak (inside the breast) fall inside a located lesion? Per lesion and
    per class, with the chance rate (:func:`bc_service.train.screen.peak_hits`; lesion radii
    at least 2 half-resolution pixels, as the training positives)."""
    found = peak_hits(cohort, lambda i: maps[i], min_radius=2.0)
    per_class: dict[str, list[float]] = {c: [] for c in LESION_CLASSES}
    for cls, hit in zip(found.classes, found.hits, strict=True):
        per_class[cls].append(hit)
    return {
        "n_lesions": len(found.hits),
        "peak_in_lesion": tm.proportion_ci(np.array(found.hits)),
        "chance_rate": round(float(np.mean(found.chance)), 4),
        "per_class_hits": {k: [int(sum(v)), len(v)] for k, v in per_class.items() if v},
    }


def _per_fold(y: NDArray[Any], s: Arr, fold: NDArray[np.int64]) -> list[float]:
    return [round(tm.auc(y[fold == k], s[fold == k]), 4) for k in range(N_FOLDS)]


def paired_delta(
    y: NDArray[Any], s_new: Arr, s_ref: Arr, n: int = tm.N_BOOT, seed: int = 0
) -> dict[str, Any]:
    """AUC(s_new) - AUC(s_ref) on the same images, with a 95% CI from the same class-
    stratified resamples for both, and the share of resamples where the new one is not
    better (a one-sided bootstrap p)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    deltas = np.empty(n)
    for b in range(n):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        deltas[b] = tm.auc(y[idx], s_new[idx]) - tm.auc(y[idx], s_ref[idx])
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    return {
        "delta": round(tm.auc(y, s_new) - tm.auc(y, s_ref), 4),
        "ci_low": round(float(lo), 4),
        "ci_high": round(float(hi), 4),
        "p_not_better": round(float((deltas <= 0).mean()), 4),
    }


def evaluate(cohort: Cohort, feats: Arr, maps: list[Arr]) -> dict[str, Any]:
    """OOF AUCs of the CNN features alone and appended to the bilateral view inputs, with the
    screen's C search; benign vs malignant among the abnormal images likewise."""
    y, ym, fold = cohort.abnormal, cohort.malignant, cohort.fold
    every = np.ones(len(y), bool)
    lesion = y.astype(bool)
    x_view = cohort.view_inputs(bilateral=True)
    x_uni = x_view[:, : ev.N_OWN]
    own = feats[:, :4]
    out: dict[str, Any] = {
        "normal_vs_abnormal": {
            "cnn_max_alone_no_fit": {
                "auc": tm.bootstrap_ci(tm.auc, y, feats[:, 0]),
                "per_fold": _per_fold(y, feats[:, 0], fold),
            },
            "cnn_asym_max_alone_no_fit": {
                "auc": tm.bootstrap_ci(tm.auc, y, feats[:, -1]),
                "per_fold": _per_fold(y, feats[:, -1], fold),
            },
        },
        "benign_vs_malignant": {},
    }
    logits: dict[str, Arr] = {}
    for name, x in (
        ("view_bilateral_reference", x_view),
        ("cnn_features_logistic", feats),
        ("view_bilateral_plus_cnn", np.hstack([x_view, feats])),
    ):
        c, grid = _choose(x, y, fold, every, C_GRID)
        s = oof_logits(x, y, fold, c, every)
        logits[name] = s
        out["normal_vs_abnormal"][name] = {
            "C": c,
            "search": grid,
            "auc": tm.bootstrap_ci(tm.auc, y, s),
            "per_fold": _per_fold(y, s, fold),
        }
    ref = logits["view_bilateral_reference"]
    for name in ("cnn_features_logistic", "view_bilateral_plus_cnn"):
        out["normal_vs_abnormal"][name]["vs_reference"] = paired_delta(y, logits[name], ref)
    out["oof_logits"] = {k: v.round(5).tolist() for k, v in logits.items()}
    mal_inputs: tuple[tuple[str, Arr | None], ...] = (
        ("cnn_own_max_alone_no_fit", None),
        ("cnn_own_features_logistic", own),
        ("view_unilateral_plus_cnn_own", np.hstack([x_uni, own])),
        ("view_unilateral_reference", x_uni),
    )
    for name, xm in mal_inputs:
        if xm is None:
            s = feats[:, 0]
            entry: dict[str, Any] = {}
        else:
            c, grid = _choose(xm, ym, fold, lesion, C_GRID)
            s = oof_logits(xm, ym, fold, c, lesion)
            entry = {"C": c, "search": grid}
        entry["auc"] = tm.bootstrap_ci(tm.auc, ym[lesion], s[lesion])
        out["benign_vs_malignant"][name] = entry
    out["localisation"] = localisation(cohort, maps)
    return out


REPORT = Path(__file__).resolve().parents[1] / "models" / "mammo-view" / "cnn_search.md"


def _ci(a: dict[str, Any]) -> str:
    lo, hi = a["ci95"]
    return f"{a['value']:.3f} ({lo:.3f}-{hi:.3f})"


def _gain(entry: dict[str, Any]) -> str:
    d = entry.get("vs_reference")
    return f"{d['delta']:+.3f} ({d['ci_low']:+.3f}, {d['ci_high']:+.3f})" if d else "-"


def report_markdown(results: dict[str, Any]) -> str:
    """The committed record of a full run (``REPORT``): the variants' OOF figures beside the
    served mammo-view/2 and the HOG baseline, so that the search stays readable and
    reproducible without the JSON."""
    full = {k: v for k, v in results["variants"].items() if "normal_vs_abnormal" in v}
    ref = next(iter(full.values()))["normal_vs_abnormal"]["view_bilateral_reference"]
    lines = [
        "# CNN lesion detector inside the patient-level CV (issue 14): tried, not served",
        "",
        "Written by `python -m bc_service.train.cnn_detector` (see its docstring for the "
        "recipe). Same 5 folds as mammo-view/2 (both breasts of a woman in one fold); each "
        "fold's network trained on the other four folds only; the fixed test split never used. "
        "AUCs out-of-fold over all 322 images with 95% bootstrap CIs; the gain is against the "
        "served view model, paired bootstrap. C of each logistic regression chosen on the "
        "pooled OOF AUC, the screen's convention (optimistic alike for every row). "
        f"HOG baseline {results['hog_baseline_oof_auc']:.3f}.",
        "",
        "| variant | normal vs abnormal: view + CNN | gain vs served | CNN features alone | "
        "CNN max, no fitting | benign vs malignant: view + CNN | peak in a lesion "
        "(chance) | CPU per view |",
        "|---|---|---|---|---|---|---|---|",
        f"| served mammo-view/2 (bilateral evidence features) | {_ci(ref['auc'])} | - | - | - | "
        f"{_ci(next(iter(full.values()))['benign_vs_malignant']['view_unilateral_reference']['auc'])}"
        " | - | - |",
    ]
    for name, v in full.items():
        na, bm, loc = v["normal_vs_abnormal"], v["benign_vs_malignant"], v["localisation"]
        both = na["view_bilateral_plus_cnn"]
        lines.append(
            f"| {name} | {_ci(both['auc'])} | {_gain(both)} | "
            f"{_ci(na['cnn_features_logistic']['auc'])} | "
            f"{_ci(na['cnn_max_alone_no_fit']['auc'])} | "
            f"{_ci(bm['view_unilateral_plus_cnn_own']['auc'])} | "
            f"{_ci(loc['peak_in_lesion'])} ({loc['chance_rate']:.3f}) | "
            f"{v['infer_cpu_s_per_view']['median'] * 1000:.0f} ms |"
        )
    lines += [
        "",
        "Peak in a lesion by class (hits / located lesions):",
        "",
        "| variant | " + " | ".join(LESION_CLASSES) + " |",
        "|---|" + "---|" * len(LESION_CLASSES),
    ]
    for name, v in full.items():
        hits = v["localisation"]["per_class_hits"]
        lines.append(
            f"| {name} | " + " | ".join(f"{hits[c][0]}/{hits[c][1]}" for c in LESION_CLASSES) + " |"
        )
    lines += [
        "",
        "Not served: no variant's interval clears the served model's, and the same recipe from "
        "other seeds moves the figures as much as any gain. The map does find masses (its peak "
        "lands in a lesion about ten times as often as chance) without ranking whole images "
        "better; calcifications are invisible at half resolution.",
        "",
    ]
    return "\n".join(lines)
