"""The effective operating point of a chest result, and the category it gives: the one place
the gateway decides at which point a score is read.

Today the effective point is the model card's, as tb_service returned it. The site-calibration
work adds site points (an admin adopts one from a validation run on local films) in
:func:`effective_point`, and nowhere else: the category is then re-derived here with the same
shared :func:`~shared.contracts.screening.categorize`, so a site point changes the category
without reinterpreting the score, and the reliability flag still wins (``outside_population``
is never read as "no finding").

A new study stores the reading it was shown with (``effective``), beside what tb_service
returned. Results stored before operating points existed carry neither a category nor a point:
:func:`stored_reading` reads them at their own deprecated 0-1 ``threshold`` (x 100), saying so
(``basis`` ``legacy_threshold``), so they display as they did, never at a later point.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from gateway.state import GatewayState
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


async def effective_point(state: GatewayState, prediction: ChestPrediction) -> OperatingPoint:
    """THE hook for the point a new result is read at: the card's point tb_service returned
    (site points, per model name and version, go here)."""
    del state  # the site points will be looked up through it
    return prediction.operating_point


def read_at(
    score: float, point: OperatingPoint, reliability: Reliability | None
) -> EffectiveReading:
    """The reading of ``score`` at ``point`` (outside the validated population wins)."""
    return EffectiveReading(
        category=categorize(score, point, reliability),
        score_threshold=point.score_threshold,
        operating_point=point,
    )


async def effective_reading(state: GatewayState, prediction: ChestPrediction) -> EffectiveReading:
    """The reading a new result is stored and shown with."""
    point = await effective_point(state, prediction)
    return read_at(prediction.score, point, prediction.reliability)


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
