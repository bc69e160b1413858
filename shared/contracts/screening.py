"""The operating-point contract every screening result speaks (chest now, mammography and site
calibration next): the point a score is read at, the category it gives, and how reliable the
answer is for this image.

One function, :func:`categorize`, turns a score, an operating point and the image's
reliability into the category; nothing else decides a category. An image outside the
validated population always comes out ``outside_population``, which readers treat as
"review recommended" (fail-safe), never as "no finding".
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from shared.contracts.common import CropBox, ModelRef


class Category(StrEnum):
    """What a screening result says, in the only words the evidence supports."""

    review_recommended = "review_recommended"
    no_finding_flagged = "no_finding_flagged"
    outside_population = "outside_population"


class ReliabilityReason(StrEnum):
    """Why an answer is not trusted for this image (each one raises the reliability flag)."""

    far_from_validated_population = "far_from_validated_population"
    implausible_lung_mask = "implausible_lung_mask"
    mirrored = "mirrored"
    orientation_uncertain = "orientation_uncertain"
    unvalidated_view = "unvalidated_view"


class Reliability(BaseModel):
    """How far this image is from the populations the model was validated on."""

    outside_population: bool = Field(
        description="True when any reason below holds: the score is not trusted for this image "
        "and the category is `outside_population` (review recommended)."
    )
    reasons: list[ReliabilityReason] = Field(default_factory=list)
    distance: float | None = Field(
        default=None,
        description="Distance from the validated population (the model's embedding), in units "
        "of the limit: above 1.0 is outside. None when not measured.",
    )
    limit_quantile: float | None = Field(
        default=None,
        description="The share of validation films inside the limit the distance is scaled to.",
    )
    position: list[float] | None = Field(
        default=None,
        description="The film's place in the population's whitened embedding space, in units "
        "of the limit: the Euclidean distance between two positions is their population "
        "distance. A site that adopts a validation run measures later films against the "
        "mean position of its own films with it. None when not measured.",
    )


class Rate(BaseModel):
    """A measured proportion (sensitivity, specificity) with its 95% confidence interval."""

    value: float = Field(ge=0, le=1)
    ci95: tuple[float, float]
    n: int = Field(ge=0, description="How many films the proportion rests on.")


class OperatingPoint(BaseModel):
    """The threshold a score is read at, with what it was measured to do."""

    source: Literal["card", "site"] = Field(
        description="`card`: the model card's point, chosen on its validation split; `site`: "
        "a point a site adopted from its own validation run."
    )
    score_threshold: float = Field(
        ge=0, le=100, description="On the 0-100 score scale: scores at or above are flagged."
    )
    sensitivity: Rate
    specificity: Rate
    measured_on: str = Field(
        default="",
        description="Where sensitivity and specificity were measured (split and sources).",
    )
    model: ModelRef
    run_id: str | None = Field(
        default=None, description="The validation run a site point came from (site only)."
    )


def assess_reliability(
    reasons: list[ReliabilityReason],
    distance: float | None = None,
    limit_quantile: float | None = None,
    position: list[float] | None = None,
) -> Reliability:
    """One image's reliability from the reasons found for it and its population distance
    (outside when the distance passes 1.0, the limit calibrated on validation films)."""
    far = [ReliabilityReason.far_from_validated_population] if (distance or 0.0) > 1.0 else []
    found = list(dict.fromkeys([*reasons, *far]))  # each reason once, in the order found
    return Reliability(
        outside_population=bool(found),
        reasons=found,
        distance=None if distance is None else round(float(distance), 4),
        limit_quantile=limit_quantile,
        position=position,
    )


def categorize(
    score: float, point: OperatingPoint, reliability: Reliability | None = None
) -> Category:
    """The category of a 0-100 score read at ``point``; outside the population wins."""
    return category_at(score, point.score_threshold, reliability)


def category_at(
    score: float, score_threshold: float, reliability: Reliability | None = None
) -> Category:
    """The rule :func:`categorize` applies, for a bare 0-100 threshold. Only for results
    stored before operating points existed (their deprecated 0-1 ``threshold`` x 100): a
    threshold without measured sensitivity and specificity is no operating point."""
    if reliability is not None and reliability.outside_population:
        return Category.outside_population
    if score >= score_threshold:
        return Category.review_recommended
    return Category.no_finding_flagged


class ScoreMap(BaseModel):
    """Where the model looked: its class-activation grid, low resolution, for a reader to
    render at display size (the gateway does, scaled to the score and the operating point).

    ``values[r][c]`` is the evidence of cell (row r from the top, column c from the left),
    divided by the grid's own maximum: in [0, 1], 1 at the strongest cell, 0 where the model
    saw no evidence (an all-zero grid: none anywhere). It is relative; how strong the evidence
    is overall is the score. The grid covers ``box`` of the uploaded image (pixels, x1/y1
    exclusive; the prediction's ``crop_box``), in the orientation the image was uploaded in,
    cell edges evenly spaced; the image is ``image_width`` x ``image_height``. It locates what
    drove the score, coarsely: it is not a lesion outline.
    """

    values: list[list[float]] = Field(
        min_length=1, max_length=64, description="Rows top to bottom, each in [0, 1]."
    )
    box: CropBox
    image_width: int = Field(ge=1)
    image_height: int = Field(ge=1)

    @model_validator(mode="after")
    def _rectangular(self) -> ScoreMap:
        cols = {len(row) for row in self.values}
        if len(cols) != 1 or not 1 <= cols.pop() <= 64:
            raise ValueError("a score map is a rectangular grid of 1 to 64 columns")
        if any(not 0.0 <= v <= 1.0 for row in self.values for v in row):
            raise ValueError("score map values lie in [0, 1]")
        return self
