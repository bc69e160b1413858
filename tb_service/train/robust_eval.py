"""Figures of the robust chest screen (TensorFlow-free: it reads network outputs).

* in-distribution test per source at the val operating point (temperature on val);
* the leave-one-source-out matrix: trained on one source, threshold on that source's val,
  read on the other source's test (AUC, sensitivity, specificity = the other source's normals);
* hannover-covid19 (all positive) flag rate per image and per patient;
* tbx11k (all TB) flag rate and CAM-peak-in-lesion-box against the random rate in the crop;
* the population distance (:mod:`tb_service.reliability`): flag rate per source, and the LOSO
  check (fitted on one source, how often is the other flagged).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tb_service.reliability import PopulationDistance
from tb_service.train import metrics as M  # noqa: N812
from tb_service.train.cache import CHEST_SETS, KER, NIH
from tb_service.train.crops import CropCache
from tb_service.train.evaluate import TBX, tbx_localisation
from tb_service.train.population import fit_population

HANNOVER = "hannover-covid19"
QUANTILE = 0.95
"""The population limit: this quantile of the val films' distances, so about 5% of films like
the validated ones are called outside (an in-distribution budget set beforehand). The
leave-one-source-out val curve (``limit_curve``, QUANTILES) shows what it buys: a tighter
limit calls more of a source never trained on outside, and that is what the model cannot
score (its AUC there is at chance). Chosen on val splits only, never the evaluation-only
sets."""
QUANTILES = (0.90, 0.95, 0.99)
OTHER = {NIH: KER, KER: NIH}
FOLD_OF = {NIH: "nih", KER: "kermany"}


@dataclass
class Outputs:
    """One network's (or an ensemble's) outputs on every cache row."""

    logits: list[NDArray[np.float64]]  # per member (N, 2)
    cam: NDArray[np.float32]  # (N, h, w), mean over members
    subtype: NDArray[np.float32]  # (N, 2)
    embedding: NDArray[np.float32]  # (N, D), members concatenated


def ensemble_p(
    logits: list[NDArray[Any]], temperature: float, bias: float = 0.0
) -> NDArray[np.float64]:
    """Mean over members of softmax(logits / T + [0, bias])[:, 1], as the exported graph
    computes it (``bias`` shifts the abnormal logit: the prior the balanced batches hid)."""
    shift = np.array([0.0, bias])
    out: NDArray[np.float64] = np.mean(
        [M.softmax(np.asarray(lg) / temperature + shift)[:, 1] for lg in logits], axis=0
    )
    return out


def _nll(p: NDArray[Any], y: NDArray[Any]) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit_ensemble_temperature(logits: list[NDArray[Any]], y: NDArray[Any]) -> float:
    """T minimising the val NLL of :func:`ensemble_p` (one member: plain temperature scaling)."""
    from scipy.optimize import minimize_scalar

    yy = y.astype(int)
    res = minimize_scalar(
        lambda log_t: _nll(ensemble_p(logits, float(np.exp(log_t))), yy),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
    )
    return float(np.exp(res.x))


def fit_ensemble_calibration(logits: list[NDArray[Any]], y: NDArray[Any]) -> tuple[float, float]:
    """(T, bias) minimising the val NLL of :func:`ensemble_p`: temperature scaling plus a shift
    of the abnormal logit. Balanced batches train the network at a 50% prior; the shift puts
    the validation films' own prevalence back, which a temperature alone cannot."""
    from scipy.optimize import minimize

    yy = y.astype(int)
    t0 = fit_ensemble_temperature(logits, y)
    res = minimize(
        lambda v: _nll(ensemble_p(logits, float(np.exp(v[0])), float(v[1])), yy),
        x0=np.array([np.log(t0), 0.0]),
        method="Nelder-Mead",
    )
    return float(np.exp(res.x[0])), float(res.x[1])


def rate(hits: NDArray[Any]) -> dict[str, Any]:
    """A proportion with its CI and n (the contract's Rate shape)."""
    est = M.proportion_ci(np.asarray(hits, bool))
    return {"value": est["value"], "ci95": list(est["ci95"]), "n": int(est.get("n", len(hits)))}


def operating_rates(y: NDArray[Any], p: NDArray[Any], t: float) -> dict[str, Any]:
    yy = y.astype(int)
    return {"sensitivity": rate(p[yy == 1] >= t), "specificity": rate(p[yy == 0] < t)}


def patient_flags(c: CropCache, m: NDArray[np.bool_], flagged: NDArray[np.bool_]) -> NDArray[Any]:
    """Per patient of rows ``m``: any of the patient's films flagged."""
    patients, hits = c.patient[m], flagged[m]
    return np.array([bool(hits[patients == pid].any()) for pid in np.unique(patients)])


def loso_matrix(
    c: CropCache, fold_p: dict[str, NDArray[Any]], fold_emb: dict[str, NDArray[Any]]
) -> dict[str, Any]:
    """Per training source: test AUC on itself and on the other source, the other source's
    sensitivity/specificity at the own-val threshold, hannover's flag rate, and how often the
    population distance fitted on the training source flags each test set."""
    y = c.abnormal.astype(int)
    out: dict[str, Any] = {}
    for src, fold in FOLD_OF.items():
        if fold not in fold_p:
            continue
        p, other = fold_p[fold], OTHER[src]
        own_val, own_test = c.where("val", [src]), c.where("test", [src])
        other_test = c.where("test", [other])
        t = M.threshold_for_sensitivity(y[own_val], p[own_val], 0.90)
        row: dict[str, Any] = {
            "threshold_own_val": t,
            "test_auc_same": M.auc_ci(y[own_test], p[own_test]),
            "test_auc_other": M.auc_ci(y[other_test], p[other_test]),
            "other": other,
            "other_test": operating_rates(y[other_test], p[other_test], t),
        }
        hann = c.dataset == HANNOVER
        if hann.any():
            row["hannover_flagged"] = rate(p[hann] >= t)
        if fold in fold_emb:
            emb = fold_emb[fold]
            pop = fit_population(
                emb[c.where("train", [src])],
                c.dataset[c.where("train", [src])],
                emb[own_val],
                QUANTILE,
            )
            row["limit_curve"] = _limit_curve(c, emb, src, other, own_val)
            d = pop.distance(emb)
            row["outside_population"] = {
                name: rate(d[m] > 1.0)
                for name, m in (
                    (f"{src} test", own_test),
                    (f"{other} test", other_test),
                    (TBX, c.dataset == TBX),
                    (HANNOVER, hann),
                )
                if m.any()
            }
            inside = other_test & (d <= 1.0)
            row["other_test_inside_population_auc"] = (
                M.auc_ci(y[inside], p[inside]) if len(np.unique(y[inside])) == 2 else None
            )
        out[f"train_{src}"] = row
    return out


def _limit_curve(
    c: CropCache, emb: NDArray[Any], src: str, other: str, own_val: NDArray[np.bool_]
) -> dict[str, dict[str, Any]]:
    """Per candidate quantile, the share of each source's val films called outside by the
    distance fitted on ``src`` alone: the own val (the in-distribution cost) and the other
    source's val (what the limit catches of a source never trained on)."""
    train = c.where("train", [src])
    curve: dict[str, dict[str, Any]] = {}
    for q in QUANTILES:
        d = fit_population(emb[train], c.dataset[train], emb[own_val], q).distance(emb)
        curve[f"{q:.2f}"] = {
            "own_val": rate(d[own_val] > 1.0),
            "other_val": rate(d[c.where("val", [other])] > 1.0),
        }
    return curve


def evaluate_robust(
    c: CropCache,
    out: Outputs,
    fold_p: dict[str, NDArray[Any]],
    fold_emb: dict[str, NDArray[Any]],
    data_dir: Path | None,
) -> tuple[dict[str, Any], PopulationDistance, NDArray[np.float64]]:
    """All figures of the pooled model; the fitted population distance; P(abnormal) per row."""
    y = c.abnormal.astype(int)
    val, test = c.where("val", CHEST_SETS), c.where("test", CHEST_SETS)
    temperature, bias = fit_ensemble_calibration([lg[val] for lg in out.logits], y[val])
    p_raw = ensemble_p(out.logits, 1.0)
    p = ensemble_p(out.logits, temperature, bias)
    t = M.threshold_for_sensitivity(y[val], p[val], 0.90)
    res: dict[str, Any] = {
        "temperature": temperature,
        "logit_bias": bias,
        "threshold": t,
        "val": M.bootstrap(y[val], p[val], t),
        "val_rates": operating_rates(y[val], p[val], t),
        "test": M.bootstrap(y[test], p[test], t),
        "test_rates": operating_rates(y[test], p[test], t),
    }
    for ds, key in ((NIH, "test_nih"), (KER, "test_kermany")):
        m = c.where("test", [ds])
        res[key] = M.bootstrap(y[m], p[m], t)
    ece_before, _ = M.reliability(y[test], p_raw[test])
    ece_after, _ = M.reliability(y[test], p[test])
    res["calibration"] = {
        "temperature": temperature,
        "ece_test_before": ece_before,
        "ece_test_after": ece_after,
    }
    sub_test = c.where("test", [KER]) & (c.subtype >= 0)
    res["subtype_test"] = M.bootstrap(c.subtype[sub_test], out.subtype[sub_test, 1], 0.5)
    res["loso"] = loso_matrix(c, fold_p, fold_emb)
    hann = c.dataset == HANNOVER
    if hann.any():
        flagged = p >= t
        res["hannover"] = {
            "n_images": int(hann.sum()),
            "n_patients": len(np.unique(c.patient[hann])),
            "flagged_per_image": rate(flagged[hann]),
            "flagged_per_patient_any_film": rate(patient_flags(c, hann, flagged)),
        }
    tb = c.dataset == TBX
    if tb.any():
        hits, chance, has_box = tbx_localisation(c, out.cam, data_dir)
        res["tbx11k"] = {
            "n": int(tb.sum()),
            "flagged_abnormal_share": rate(p[tb] >= t),
            "heatmap_peak_in_lesion_box": rate(hits[has_box]),
            "chance_level_random_peak_in_crop": float(round(float(chance[has_box].mean()), 4)),
            "images_with_boxes": int(has_box.sum()),
        }
    train = c.where("train", CHEST_SETS)
    pop = fit_population(out.embedding[train], c.dataset[train], out.embedding[val], QUANTILE)
    d = pop.distance(out.embedding)
    sets = [
        (name, m)
        for name, m in (
            ("nih-cxr14 val", c.where("val", [NIH])),
            ("kermany-pediatric val", c.where("val", [KER])),
            ("nih-cxr14 test", c.where("test", [NIH])),
            ("kermany-pediatric test", c.where("test", [KER])),
            (TBX, tb),
            (HANNOVER, hann),
        )
        if m.any()
    ]
    mask_flag = np.char.str_len(c.reasons.astype(str)) > 0  # e.g. implausible_lung_mask
    res["reliability"] = {
        "outside_population": {name: rate(d[m] > 1.0) for name, m in sets},
        "preprocessing_reason": {name: rate(mask_flag[m]) for name, m in sets},
        "flagged_any_reason": {name: rate((d > 1.0)[m] | mask_flag[m]) for name, m in sets},
        "median_distance": {
            name: float(round(float(np.median(d[m])), 3))
            for name, m in (("test", test), (TBX, tb), (HANNOVER, hann))
            if m.any()
        },
    }
    if hann.any():
        inside = hann & (d <= 1.0)
        res["hannover"]["inside_population_flagged_per_image"] = rate((p >= t)[inside])
    return res, pop, p
