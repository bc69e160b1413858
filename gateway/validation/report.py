"""A validation run's report, from its scored units, with the training code's metrics
(:mod:`shared.train.evaluation`: AUC, percentile bootstrap CIs, threshold choice, calibration).

What it holds: n per class (and the units the service refused, by code); the AUC of the
probability with its 95% CI and the ROC curve; sensitivity, specificity, PPV and NPV with 95%
CIs at the current operating point (the site's adopted point for the model, else the card's)
and at candidate points chosen on these films (target sensitivity 0.90 and 0.95, Youden); the
calibration curve and ECE; the share flagged ``outside_population``; the same per subgroup;
warnings. A candidate's threshold is chosen on the very films it is measured on, so its
figures are optimistic: each candidate also carries the 95% interval of the threshold over
bootstrap resamples and an out-of-bag sensitivity (the threshold chosen on a resample,
measured on the films that resample left out), a fairer guess of what the site will see.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shared.train import evaluation as ev

N_BOOT = 1000
SEED = 0
ROC_POINTS = 200
TARGETS = (0.90, 0.95)
OPTIMISM = (
    "Candidate thresholds are chosen on these same films: their sensitivity and specificity "
    "here are optimistic (in-sample). The out-of-bag sensitivity and the threshold's interval "
    "say how much they move on films not used to choose them; re-validate on new films after "
    "adopting one."
)
RELATIVE_SCORE = (
    "The mammography score is a relative suspicion score, not a probability: the calibration "
    "curve reads score/100 and says how far it is from one."
)


@dataclass
class Unit:
    label: int
    probability: float
    score: float
    outside: bool
    subgroups: dict[str, str] = field(default_factory=dict)
    position: list[float] | None = None


@dataclass
class Limits:
    min_positives: int
    sensitivity_floor: float
    auc_floor: float


Arr = NDArray[Any]


def _rate(kind: str, thr: float) -> Callable[[Arr, Arr], float]:
    def f(y: Arr, s: Arr) -> float:
        yb, flag = y.astype(bool), s >= thr
        num, den = {
            "sensitivity": ((flag & yb).sum(), yb.sum()),
            "specificity": ((~flag & ~yb).sum(), (~yb).sum()),
            "ppv": ((flag & yb).sum(), flag.sum()),
            "npv": ((~flag & ~yb).sum(), (~flag).sum()),
        }[kind]
        return float(num / den) if den else float("nan")

    return f


def point_figures(y: Arr, s: Arr, thr: float, n_boot: int = N_BOOT) -> dict[str, Any]:
    """Sensitivity, specificity, PPV and NPV of ``s >= thr`` with 95% bootstrap CIs
    (class-stratified resamples), each with the number of films it rests on, and the
    confusion counts."""
    out: dict[str, Any] = {"score_threshold": round(float(thr), 4)}
    yb, flag = np.asarray(y).astype(bool), np.asarray(s) >= thr
    # n: the films each proportion rests on (its denominator), not the whole set
    rests_on = {
        "sensitivity": yb.sum(),
        "specificity": (~yb).sum(),
        "ppv": flag.sum(),
        "npv": (~flag).sum(),
    }
    for kind, n in rests_on.items():
        est = ev.bootstrap_ci(_rate(kind, thr), y, s, n_boot=n_boot, seed=SEED, stratified=True)
        out[kind] = {**est, "n": int(n)}
    op = ev.operating_point(y, s, thr)
    out["counts"] = {k: op[k] for k in ("tp", "tn", "fp", "fn")}
    return out


def _candidate(y: Arr, s: Arr, name: str, choose: Callable[[Arr, Arr], float]) -> dict[str, Any]:
    thr = choose(y, s)
    out = {"name": name, "in_sample": True, **point_figures(y, s, thr)}
    thresholds, oob = [], []
    n = len(y)
    for idx in ev.resample_indices(y, n_boot=N_BOOT // 5, seed=SEED, stratified=True):
        t = choose(y[idx], s[idx])
        thresholds.append(t)
        left = np.setdiff1d(np.arange(n), idx)
        if left.size and y[left].any():
            oob.append(_rate("sensitivity", t)(y[left], s[left]))
    lo, hi = (float(v) for v in np.percentile(thresholds, [2.5, 97.5]))
    out["threshold_ci95"] = [round(lo, 4), round(hi, 4)]
    out["out_of_bag_sensitivity"] = round(float(np.mean(oob)), 4) if oob else None
    return out


def _roc(y: Arr, p: Arr) -> dict[str, list[float]]:
    fpr, tpr = ev.roc_curve(y, p)
    if fpr.size > ROC_POINTS:
        keep = np.unique(np.linspace(0, fpr.size - 1, ROC_POINTS).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 4) for v in fpr], "tpr": [round(float(v), 4) for v in tpr]}


def _site_population(units: list[Unit]) -> dict[str, Any] | None:
    """How tight the run's films are around their own mean position (chest): the share within
    the model's limit of that mean is what adopting the run would let in."""
    pos = [u.position for u in units if u.position is not None]
    if len(pos) < 2:
        return None
    arr = np.asarray(pos, np.float64)
    dist = np.linalg.norm(arr - arr.mean(axis=0), axis=1)
    return {
        "films": len(pos),
        "share_within_limit_of_run_mean": round(float((dist <= 1.0).mean()), 4),
    }


def clean(value: Any) -> Any:
    """The report as JSON can hold it: NaN (a rate with an empty denominator) becomes None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        return clean(value.item())
    return value


def summary(units: list[Unit], current: float | None, *, n_boot: int = N_BOOT) -> dict[str, Any]:
    """The figures of one set of units (the whole run, or one subgroup)."""
    y = np.asarray([u.label for u in units], np.int64)
    p = np.asarray([u.probability for u in units], np.float64)
    s = np.asarray([u.score for u in units], np.float64)
    out: dict[str, Any] = {
        "n": int(y.size),
        "positives": int(y.sum()),
        "negatives": int(y.size - y.sum()),
        "outside_population": ev.proportion_ci(
            np.asarray([u.outside for u in units], bool), n_boot=n_boot, seed=SEED
        ),
    }
    both = 0 < out["positives"] < out["n"]
    out["auc"] = (
        ev.bootstrap_ci(ev.auc, y, p, n_boot=n_boot, seed=SEED, stratified=True) if both else None
    )
    out["current"] = (
        point_figures(y, s, current, n_boot) if y.size and current is not None else None
    )
    return out


def build(
    units: list[Unit],
    current_point: dict[str, Any] | None,
    limits: Limits,
    *,
    modality: str,
    failures: dict[str, int],
) -> dict[str, Any]:
    """The whole report (see module), NaN-free. ``current_point`` is the shared OperatingPoint
    (JSON) the films are read at now (None: the service gave none); ``failures`` the
    refusals by error code."""
    out: dict[str, Any] = clean(
        _build(units, current_point, limits, modality=modality, failures=failures)
    )
    return out


def _build(
    units: list[Unit],
    current_point: dict[str, Any] | None,
    limits: Limits,
    *,
    modality: str,
    failures: dict[str, int],
) -> dict[str, Any]:
    warnings: list[str] = []
    notes = [OPTIMISM] + ([RELATIVE_SCORE] if modality == "mammography" else [])
    thr = float(current_point["score_threshold"]) if current_point else None
    if current_point is None:
        warnings.append("The service returned no operating point: no current figures.")
    report: dict[str, Any] = {
        "current_point": current_point,
        "failures": failures,
        "notes": notes,
        "warnings": warnings,
    }
    if failures:
        warnings.append(
            f"{sum(failures.values())} image(s) could not be scored and are left out "
            f"({', '.join(f'{k}: {v}' for k, v in sorted(failures.items()))})."
        )
    if not units:
        warnings.append("No image was scored: there is nothing to report.")
        report.update(
            overall=None, candidates=[], roc=None, calibration=None, subgroups={}, population=None
        )
        return report
    overall = summary(units, thr)
    report["overall"] = overall
    y = np.asarray([u.label for u in units], np.int64)
    p = np.asarray([u.probability for u in units], np.float64)
    s = np.asarray([u.score for u in units], np.float64)
    both = 0 < overall["positives"] < overall["n"]
    if overall["positives"] < limits.min_positives:
        warnings.append(
            f"Only {overall['positives']} positive(s): under {limits.min_positives}, the "
            "sensitivity's interval is too wide to choose an operating point on."
        )
    if overall["negatives"] < limits.min_positives:
        warnings.append(
            f"Only {overall['negatives']} negative(s): under {limits.min_positives}, the "
            "specificity's interval is too wide to rely on."
        )
    candidates: list[dict[str, Any]] = []
    if both:
        for target in TARGETS:

            def choose(yy: Arr, ss: Arr, t: float = target) -> float:
                return ev.threshold_for_sensitivity(yy, ss, t)

            cand = _candidate(y, s, f"sensitivity_{target:.2f}", choose)
            cand["target_sensitivity"] = target
            candidates.append(cand)
        candidates.append(_candidate(y, s, "youden", ev.youden_threshold))
        report["roc"] = _roc(y, p)
        auc = overall["auc"]
        if auc is not None and auc["ci_low"] < limits.auc_floor:
            warnings.append(
                f"The AUC's 95% CI lower bound ({auc['ci_low']:.3f}) is below "
                f"{limits.auc_floor:.2f}: the model may not rank this site's films usefully."
            )
    else:
        report["roc"] = None
        warnings.append("Both classes are needed for an AUC, a ROC curve and candidate points.")
    sens = (overall["current"] or {}).get("sensitivity") or {}
    if both and sens.get("ci_low") is not None and sens["ci_low"] < limits.sensitivity_floor:
        warnings.append(
            f"At the current point the sensitivity's 95% CI lower bound ({sens['ci_low']:.3f}) "
            f"is below {limits.sensitivity_floor:.2f}."
        )
    report["candidates"] = candidates
    ece, bins = ev.reliability(y, np.clip(p, 0.0, 1.0), 10)
    report["calibration"] = {"ece": round(ece, 4), "bins": bins}
    report["subgroups"] = _subgroups(units, thr)
    report["population"] = _site_population(units)
    return report


def _subgroups(units: list[Unit], thr: float | None) -> dict[str, dict[str, Any]]:
    columns = sorted({k for u in units for k in u.subgroups})
    out: dict[str, dict[str, Any]] = {}
    for col in columns:
        values = sorted({u.subgroups[col] for u in units if col in u.subgroups})
        out[col] = {
            v: summary([u for u in units if u.subgroups.get(col) == v], thr, n_boot=N_BOOT // 2)
            for v in values
        }
    return out
