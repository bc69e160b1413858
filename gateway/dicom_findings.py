"""What IRMI says of a finished study, in the shape the DICOM results (SR and overlay captions)
state it; kept apart from :mod:`gateway.dicom_sr` so that reading it does not import highdicom
(a fifth of a second of gateway start-up)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.contracts.common import ModelRef
from shared.contracts.screening import Category, OperatingPoint

CATEGORY_WORDS = {
    Category.review_recommended: "Review recommended",
    Category.no_finding_flagged: "No finding flagged",
    Category.outside_population: "Outside the validated population: no reading",
}


@dataclass(frozen=True)
class ViewFinding:
    """One analysed image: its source instance, and (mammography) its view's reading."""

    sop_class_uid: str
    sop_instance_uid: str
    tag: str | None = None
    score: float | None = None
    category: Category | None = None


@dataclass(frozen=True)
class ResultSummary:
    kind: str  # chest | mammography
    category: Category
    score: float | None
    score_threshold: float | None
    operating_point: OperatingPoint | None
    models: list[ModelRef]
    statement: str
    views: list[ViewFinding] = field(default_factory=list)
