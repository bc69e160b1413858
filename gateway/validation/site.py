"""Site operating points: chosen from a validation run's films, previewed, adopted (a version
per model name, audited), rolled back; and what a new result is read with.

A point is tied to the exact model it was measured on (name, version, sha256). A result from
another model (a new version) is read at the card's point, and its reading says so.

Choosing: a threshold on the 0-100 score, or a target sensitivity (the highest threshold
reaching it on the run's films, :func:`shared.train.evaluation.threshold_for_sensitivity`).
The point's sensitivity and specificity are those of the run's films, in-sample, with their
95% CIs; the point's ``measured_on`` says so.

Mammography: a run's unit is a breast, scored by mammo-view from the views it was given;
bc_service reads it with the other breast when the unit holds the other breast's view of the
same kind, else from that breast alone, at a different card point. A run's breasts must all be
read one way; the site point (``choice.comparison``) then replaces the card's point for that
reading only, and the other reading keeps the card's point (nothing local was measured for it).

Recalibration (optional): Platt scaling of the probability (logistic regression on its logit)
by default; isotonic regression only when the run has ``validation_isotonic_min_positives``
positives and as many negatives. Both are monotone, so the category (score >= threshold) is
unchanged by them; they give doctors the local probability (``calibrated_score``).

Population (chest): tb_service returns each film's position in its population's whitened
embedding space (``reliability.position``), in units of its limit, so the Euclidean distance
of two positions is their population distance. Adopting a run stores the mean position of its
films; a later film flagged only ``far_from_validated_population`` whose distance to that mean
is within the limit (<= 1.0) is read as inside: the site becomes one more source of the
model's nearest-source distance, with the model's own covariance and limit. Other reasons
(mirrored, implausible lung mask, ...) are never cleared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.validation.report import point_figures
from gateway.validation.tables import SitePoint, ValidationItem, ValidationRun
from shared.contracts.common import ModelRef
from shared.contracts.screening import OperatingPoint, Rate, Reliability, ReliabilityReason
from shared.errors import Conflict, ValidationFailed
from shared.train import evaluation as ev

FAR = ReliabilityReason.far_from_validated_population


class PointChoice(BaseModel):
    """How an admin chooses a site point from a run."""

    score_threshold: float | None = Field(
        default=None, ge=0, le=100, description="A threshold on the 0-100 score; or:"
    )
    target_sensitivity: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="The highest threshold reaching this sensitivity on the run's films.",
    )
    recalibration: Literal["none", "platt", "isotonic"] = Field(
        default="platt",
        description="Local recalibration of the probability (Platt by default; isotonic only "
        "with enough positives and negatives).",
    )
    extend_population: bool = Field(
        default=True,
        description="Films like the run's are no longer flagged far from the validated "
        "population (chest; see the API description).",
    )


@dataclass
class Units:
    y: np.ndarray[Any, Any]
    p: np.ndarray[Any, Any]
    s: np.ndarray[Any, Any]
    positions: list[list[float]]
    model: ModelRef


def run_units(run: ValidationRun, items: list[ValidationItem]) -> Units:
    """The run's scored units, all from one model (else the run cannot give a point)."""
    scored = [i for i in items if i.status == "scored" and i.score is not None]
    models = {tuple(sorted((i.model or {}).items())) for i in scored}
    if not scored:
        raise Conflict("This run has no scored image.", details={"run_id": run.id})
    if len(models) != 1:
        raise Conflict(
            "This run's images were scored by different models: re-run it.",
            details={"run_id": run.id, "models": len(models)},
        )
    positions = [
        list(map(float, (i.reliability or {}).get("position") or []))
        for i in scored
        if (i.reliability or {}).get("position")
    ]
    return Units(
        y=np.asarray([i.label for i in scored], np.int64),
        p=np.asarray([float(i.probability or 0.0) for i in scored], np.float64),
        s=np.asarray([float(i.score) for i in scored if i.score is not None], np.float64),
        positions=positions,
        model=ModelRef.model_validate(scored[0].model),
    )


def _rate(est: dict[str, Any]) -> Rate:
    return Rate(value=est["value"], ci95=(est["ci_low"], est["ci_high"]), n=est["n"])


def _calibration(
    method: str, y: np.ndarray[Any, Any], p: np.ndarray[Any, Any], min_pos: int
) -> dict[str, Any] | None:
    if method == "none":
        return None
    if method == "isotonic":
        pos = int(y.sum())
        if pos < min_pos or len(y) - pos < min_pos:
            raise ValidationFailed(
                f"Isotonic recalibration needs at least {min_pos} positives and negatives "
                f"(this run has {pos} and {len(y) - pos}); use Platt.",
                details={"field": "recalibration", "min_positives": min_pos},
            )
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return {
            "method": "isotonic",
            "x": [round(float(v), 6) for v in iso.X_thresholds_],
            "y": [round(float(v), 6) for v in iso.y_thresholds_],
        }
    from sklearn.linear_model import LogisticRegression

    z = _logit(p).reshape(-1, 1)
    lr = LogisticRegression(C=1e6).fit(z, y)
    a, b = float(lr.coef_[0][0]), float(lr.intercept_[0])
    if a <= 0:
        raise ValidationFailed(
            "Platt recalibration fits a non-increasing map on this run (the score does not "
            "rank these films): adopt the point without recalibration.",
            details={"field": "recalibration"},
        )
    return {"method": "platt", "a": round(a, 6), "b": round(b, 6)}


def _logit(p: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    q = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    out: np.ndarray[Any, Any] = np.log(q / (1 - q))
    return out


def calibrated(calibration: dict[str, Any] | None, probability: float) -> float | None:
    """The locally recalibrated probability, x 100, or None without a recalibration."""
    if not calibration:
        return None
    if calibration["method"] == "platt":
        z = float(_logit(np.asarray([probability]))[0])
        q = 1.0 / (1.0 + math.exp(-(calibration["a"] * z + calibration["b"])))
    else:
        q = float(np.interp(probability, calibration["x"], calibration["y"]))
    return round(100.0 * q, 2)


def preview(
    run: ValidationRun, items: list[ValidationItem], choice: PointChoice, isotonic_min: int
) -> dict[str, Any]:
    """What adopting ``choice`` would give: the point, its figures, the recalibration and the
    population (nothing is stored)."""
    if run.status != "done":
        raise Conflict("The run has not finished.", details={"status": run.status})
    if (choice.score_threshold is None) == (choice.target_sensitivity is None):
        raise ValidationFailed(
            "Give either score_threshold or target_sensitivity.",
            details={"field": "score_threshold"},
        )
    u = run_units(run, items)
    comparison = _comparison(run, items)
    if not 0 < int(u.y.sum()) < len(u.y):
        raise Conflict("A point needs positives and negatives in the run.")
    if choice.target_sensitivity is not None:
        thr = ev.threshold_for_sensitivity(u.y, u.s, choice.target_sensitivity)
        how = f"the highest threshold reaching sensitivity {choice.target_sensitivity:.2f}"
    else:
        thr = float(choice.score_threshold or 0.0)
        how = "a threshold the admin set"
    figures = point_figures(u.y, u.s, thr)
    unit = "breasts" if run.modality == "mammography" else "films"
    read = f", read {COMPARISON_WORDS[comparison]}" if comparison else ""
    measured_on = (
        f"Site validation run {run.id} ({run.name}): {len(u.y)} local {unit}{read}, "
        f"{int(u.y.sum())} positive; in-sample ({how}), so optimistic."
    )
    point = OperatingPoint(
        source="site",
        score_threshold=round(thr, 4),
        sensitivity=_rate(figures["sensitivity"]),
        specificity=_rate(figures["specificity"]),
        measured_on=measured_on,
        model=u.model,
        run_id=run.id,
    )
    population = None
    if choice.extend_population and len(u.positions) >= 2:
        arr = np.asarray(u.positions, np.float64)
        mean = arr.mean(axis=0)
        within = float((np.linalg.norm(arr - mean, axis=1) <= 1.0).mean())
        population = {
            "mean": [round(float(v), 5) for v in mean],
            "films": len(u.positions),
            "share_of_run_within_limit": round(within, 4),
        }
    chosen = choice.model_dump(mode="json")
    if comparison is not None:
        chosen["comparison"] = comparison
    return {
        "point": point.model_dump(mode="json"),
        "figures": figures,
        "choice": chosen,
        "calibration": _calibration(choice.recalibration, u.y, u.p, isotonic_min),
        "population": population,
        "in_sample": True,
    }


COMPARISON_WORDS = {"contralateral": "with the other breast", "unilateral": "from one breast alone"}


def _comparison(run: ValidationRun, items: list[ValidationItem]) -> str | None:
    """Mammography: how the run's breasts were read (all alike, else no point: a point applies
    only to readings like those it was measured on); None for chest."""
    if run.modality != "mammography":
        return None
    found = {
        str((i.reliability or {}).get("comparison") or "unilateral")
        for i in items
        if i.status == "scored"
    }
    if len(found) != 1:
        raise Conflict(
            "This run's breasts were read both with the other breast and alone: a site point "
            "needs one kind of reading: group every unit's views the same way.",
            details={"run_id": run.id, "comparisons": sorted(found)},
        )
    return found.pop()


async def active(session: AsyncSession, modality: str) -> SitePoint | None:
    """The modality's point in force (the latest active one), whatever model it was for."""
    rows = await session.execute(
        select(SitePoint)
        .where(SitePoint.modality == modality, SitePoint.status == "active")
        .order_by(SitePoint.adopted_at.desc(), SitePoint.version.desc())
        .limit(1)
    )
    return rows.scalars().first()


def applies(site: SitePoint, model: ModelRef) -> bool:
    return (site.model_name, site.model_version, site.model_sha256) == (
        model.name,
        model.version,
        model.sha256,
    )


def site_reliability(site: SitePoint, reliability: Reliability) -> Reliability | None:
    """The reliability with the site's population taken in (see module), or None when the
    site changes nothing for this film."""
    mean = (site.population or {}).get("mean")
    if not mean or not reliability.outside_population or reliability.position is None:
        return None
    if FAR not in reliability.reasons or len(mean) != len(reliability.position):
        return None
    d = float(np.linalg.norm(np.asarray(reliability.position) - np.asarray(mean)))
    if d > 1.0:
        return None
    others = [r for r in reliability.reasons if r != FAR]
    return Reliability(
        outside_population=bool(others),
        reasons=others,
        distance=round(min(d, reliability.distance or d), 4),
        limit_quantile=reliability.limit_quantile,
        position=reliability.position,
    )
