"""Chest X-ray prediction contract (tb_service ⇄ gateway)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from shared.contracts.common import CropBox, ModelRef, PngImage
from shared.contracts.screening import (
    Category,
    OperatingPoint,
    Reliability,
    ScoreMap,
    categorize,
)

DEPRECATED_THRESHOLD = (
    "Deprecated, kept one release and unchanged in meaning: the operating threshold on "
    "P(abnormal), 0-1, that `label` is read at. Read `category` at `operating_point` "
    "(score_threshold on the 0-100 score) instead."
)
DEPRECATED_LABEL = (
    "Deprecated, kept one release and unchanged in meaning: `abnormal` when P(abnormal) >= "
    "`threshold`, whatever the reliability. Use `category`."
)
DEPRECATED_HEATMAP = (
    "Deprecated, kept one release for direct callers who ask (`heatmap=true`): an RGBA PNG "
    "the size of the original image (colour = evidence for 'abnormal', alpha = strength). "
    "Render `score_map` at display size instead."
)


class Validity(BaseModel):
    """The gate: is this a chest X-ray at all?"""

    score: float = Field(ge=0, le=1, description="Probability that the image is a chest X-ray.")
    threshold: float = Field(ge=0, le=1)
    passed: bool


class Finding(BaseModel):
    """A finding under "abnormal" that a model supports, e.g. pneumonia with its subtypes."""

    name: str = Field(examples=["pneumonia"])
    probability: float = Field(ge=0, le=1)
    subtypes: dict[str, float] = Field(
        default_factory=dict, description="e.g. {'bacterial': 0.7, 'viral': 0.3}"
    )
    note: str = ""


class Orientation(BaseModel):
    """What the orientation model saw: the film is scored upright, the response is on the
    upload as sent (crop box and heatmap in its coordinates)."""

    rotation_applied_deg: Literal[0, 90, 180, 270] = Field(
        description="Degrees clockwise the upload was turned to be upright before scoring."
    )
    mirrored_suspected: bool = Field(
        description="The film looks left-right mirrored (or dextrocardia): flagged, never "
        "corrected; the reliability reasons say `mirrored`."
    )
    confidence: float = Field(ge=0, le=1, description="Probability of the rotation found.")


class ChestPrediction(BaseModel):
    validity: Validity
    category: Category = Field(
        description="What the result says, from shared categorize(score, operating_point, "
        "reliability): `outside_population` (outside what the screen was validated on: "
        "review recommended) whenever reliability.outside_population, else "
        "`review_recommended` at or above the point's score_threshold, else "
        "`no_finding_flagged`."
    )
    operating_point: OperatingPoint = Field(
        description="The model card's operating point the category was read at, with its "
        "measured sensitivity and specificity (95% CIs) and where they were measured."
    )
    label: Literal["normal", "abnormal"] = Field(
        description=DEPRECATED_LABEL, deprecated=DEPRECATED_LABEL
    )
    probabilities: dict[Literal["normal", "abnormal"], float]
    score: float = Field(ge=0, le=100, description="Calibrated abnormality score, 0-100.")
    threshold: float = Field(
        ge=0, le=1, description=DEPRECATED_THRESHOLD, deprecated=DEPRECATED_THRESHOLD
    )
    findings: list[Finding] = Field(
        default_factory=list,
        description="Pneumonia with its subtypes, for the doctor: only when category is "
        "`review_recommended`.",
    )
    score_map: ScoreMap | None = Field(
        default=None,
        description="Where the model looked: the low-resolution class-activation grid over "
        "crop_box, for the reader to render at display size (None when the model has none).",
    )
    heatmap: PngImage | None = Field(
        default=None, description=DEPRECATED_HEATMAP, deprecated=DEPRECATED_HEATMAP
    )
    crop_box: CropBox | None = None
    orientation: Orientation | None = Field(
        default=None, description="None when the service runs without an orientation model."
    )
    reliability: Reliability = Field(
        default_factory=lambda: Reliability(outside_population=False),
        description="Whether this film is inside the population the model was validated on.",
    )
    models: list[ModelRef] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    disclaimer: str = "Screening aid, not a diagnosis: a clinician must review this image."

    @model_validator(mode="after")
    def _category_is_categorize(self) -> ChestPrediction:
        """The category is the one categorize gives, never another: a result outside the
        validated population that says anything but `outside_population` is refused."""
        category, point = self.category, self.operating_point
        if category is not None and point is not None:
            expected = categorize(self.score, point, self.reliability)
            if category != expected:
                raise ValueError(f"category {category} is not categorize()'s {expected}")
        return self


class ChestBatchItem(BaseModel):
    filename: str | None = None
    prediction: ChestPrediction | None = None
    error: dict[str, object] | None = Field(
        default=None, description="The error envelope's `error` object when this file failed."
    )


class ChestBatchResponse(BaseModel):
    results: list[ChestBatchItem]


class LegacyTbRequest(BaseModel):
    """The original report's `/api/tb` body."""

    image: str = Field(description="Base64 of a PNG, JPEG or DICOM file.")


class LegacyTbResponse(BaseModel):
    prediction: dict[Literal["abnormal", "normal"], float]
