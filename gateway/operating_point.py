"""The effective operating point of a chest result, and the category it gives: the one place
the gateway decides at which point a score is read.

The effective point is the site's, when an admin adopted one from a validation run on local
films for the very model (name, version, sha256) that scored the film
(:mod:`gateway.validation.site`), else the model card's as tb_service returned it; a site point
for another model version is not used, and the reading says so (``site_note``). The category
is re-derived here with the same shared :func:`~shared.contracts.screening.categorize`, so a
site point changes the category without reinterpreting the score, and the reliability flag
still wins (``outside_population`` is never read as "no finding"); an adopted run's population
may take in a film flagged only as far from the card's population (``reliability``).

A new study stores the reading it was shown with (``effective``), beside what tb_service
returned. Results stored before operating points existed carry neither a category nor a point:
:func:`stored_reading` reads them at their own deprecated 0-1 ``threshold`` (x 100), saying so
(``basis`` ``legacy_threshold``), so they display as they did, never at a later point.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.state import GatewayState
from gateway.validation import site
from gateway.validation.tables import SitePoint
from shared.contracts.chest import ChestPrediction
from shared.contracts.screening import (
    Category,
    OperatingPoint,
    Reliability,
    categorize,
    category_at,
)

Basis = Literal["operating_point", "legacy_threshold"]


class EffectiveReading(BaseModel):
    """How the gateway reads a chest result: the category at the effective operating point."""

    category: Category = Field(
        description="shared categorize(score, operating_point, reliability): what the patient "
        "and the doctor are shown."
    )
    score_threshold: float = Field(
        ge=0, le=100, description="The 0-100 score threshold the category was read at."
    )
    operating_point: OperatingPoint | None = Field(
        default=None,
        description="The effective point (the model card's; a site's once adopted), with its "
        "measured sensitivity and specificity. None for a result stored before operating "
        "points: see `basis`.",
    )
    basis: Basis = Field(
        default="operating_point",
        description="`operating_point`: read at `operating_point`. `legacy_threshold`: a "
        "result stored before operating points, read at its own deprecated 0-1 `threshold` "
        "x 100, as it was shown then; no sensitivity or specificity was recorded with it.",
    )
    reliability: Reliability | None = Field(
        default=None,
        description="The reliability the category was read with when the site's adopted "
        "validation run changed it (a film like the site's own, no longer far from the "
        "validated population); None: tb_service's `reliability` as returned.",
    )
    calibrated_score: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="The probability recalibrated on the site's films (Platt or isotonic), "
        "x 100, when the site point carries a recalibration. For doctors; the category reads "
        "`score` at `score_threshold`.",
    )
    site_note: str | None = Field(
        default=None,
        description="Why a site's adopted point was not used for this result (it was measured "
        "on another model version), so the card's point was.",
    )


async def active_site_point(
    state: GatewayState, modality: str, session: AsyncSession | None = None
) -> SitePoint | None:
    """The site point in force for ``modality`` (:mod:`gateway.validation.point_cache`); when
    it is read from the database, in the caller's ``session`` if it has one: a request that
    already holds a pooled connection must not wait for a second (under load every connection
    would be held by a request waiting for another: a pool deadlock)."""

    async def read() -> SitePoint | None:
        if session is not None:
            return await site.active(session, modality)
        async with state.sessions() as own:
            return await site.active(own, modality)

    return await state.site_points.active(modality, read)


async def effective_point(
    state: GatewayState, prediction: ChestPrediction, session: AsyncSession | None = None
) -> OperatingPoint:
    """THE hook for the point a new result is read at: the site's for this exact model, else
    the card's point tb_service returned."""
    return (await effective_reading(state, prediction, session)).operating_point or (
        prediction.operating_point
    )


def read_at(
    score: float, point: OperatingPoint, reliability: Reliability | None
) -> EffectiveReading:
    """The reading of ``score`` at ``point`` (outside the validated population wins)."""
    return EffectiveReading(
        category=categorize(score, point, reliability),
        score_threshold=point.score_threshold,
        operating_point=point,
    )


async def effective_reading(
    state: GatewayState, prediction: ChestPrediction, session: AsyncSession | None = None
) -> EffectiveReading:
    """The reading a new result is stored and shown with (see module); ``session``: the
    caller's, when it holds one (:func:`active_site_point`)."""
    card = prediction.operating_point
    adopted = await active_site_point(state, "chest", session)
    if adopted is None:
        return read_at(prediction.score, card, prediction.reliability)
    if not site.applies(adopted, card.model):
        reading = read_at(prediction.score, card, prediction.reliability)
        reading.site_note = (
            f"The site point v{adopted.version} was measured on {adopted.model_name} "
            f"{adopted.model_version} (sha256 {adopted.model_sha256[:12]}); this result comes "
            f"from {card.model.name} {card.model.version} (sha256 {card.model.sha256[:12]}), "
            "so it is read at the model card's point. Validate this model version on local "
            "films and adopt a point for it."
        )
        return reading
    point = OperatingPoint.model_validate(adopted.point)
    changed = site.site_reliability(adopted, prediction.reliability)
    reading = read_at(prediction.score, point, changed or prediction.reliability)
    reading.reliability = changed
    reading.calibrated_score = site.calibrated(
        adopted.calibration, float(prediction.probabilities["abnormal"])
    )
    return reading


def stored_reading(result: dict[str, Any]) -> EffectiveReading:
    """The reading of a stored chest result (its JSON as stored): the one it was stored with;
    for a result from before operating points, its own deprecated threshold (see module)."""
    if result.get("effective") is not None:
        return EffectiveReading.model_validate(result["effective"])
    reliability = Reliability.model_validate(
        result.get("reliability") or {"outside_population": False}
    )
    score = float(result["score"])
    if result.get("operating_point") is not None:
        point = OperatingPoint.model_validate(result["operating_point"])
        return read_at(score, point, reliability)
    # Its label was P(abnormal) >= threshold: read the stored probability (6 places), not the
    # score rounded to 2, so that the category is the label it was shown with.
    p_abnormal = (result.get("probabilities") or {}).get("abnormal")
    precise = score if p_abnormal is None else 100.0 * float(p_abnormal)
    threshold = 100.0 * float(result["threshold"])
    return EffectiveReading(
        category=category_at(precise, threshold, reliability),
        score_threshold=threshold,
        basis="legacy_threshold",
    )
