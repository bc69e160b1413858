"""Mammography exam contract (bc_service ⇄ gateway), including the SSE events."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr

from shared.contracts.common import CropBox, ModelRef, PngImage
from shared.contracts.screening import Category, OperatingPoint, ScoreMap

ViewTag = Literal["L-CC", "R-CC", "L-MLO", "R-MLO"]
Laterality = Literal["L", "R"]
ViewKind = Literal["CC", "MLO"]
MammoLabel = Literal["normal", "benign", "malignant"]
ExamStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]

Comparison = Literal["contralateral", "unilateral"]
DensityClass = Literal["fatty", "fatty_glandular", "dense_glandular"]

COMPARISON_DOC = (
    "`contralateral`: read with the other breast's view of the same kind (model 2's bilateral "
    "head, the exam's `operating_point`); `unilateral`: that view is missing, read from this "
    "breast alone (the weaker fallback, the exam's `unilateral_operating_point`)."
)
DENSE_NOTE = (
    "Dense breast tissue can hide a finding: a screen that flags nothing is worth less in a "
    "dense breast."
)
SCORE_SCALE = (
    "Suspicion 0-100 of an abnormality needing work-up, calibrated on pooled out-of-fold "
    "predictions of mini-MIAS, where 36% of breasts are abnormal: a relative score, never a "
    "risk (screening populations have well under 1% cancer)."
)

STAGES = ["decode", "orientation", "crop", "enhance", "centers", "heatmaps", "classify"]


class Probabilities(BaseModel):
    benign: float = Field(ge=0, le=1)
    malignant: float = Field(ge=0, le=1)


class ViewResult(BaseModel):
    view_id: str = Field(description="Position of the upload in the request, e.g. 'view-0'.")
    given_tag: ViewTag | None = None
    tag: ViewTag = Field(description="The tag used: the given one, or the detected one.")
    laterality: Laterality
    view: ViewKind
    detected_laterality: Laterality
    detected_view: ViewKind
    detection_confidence: float = Field(ge=0, le=1)
    tag_conflict: str | None = Field(
        default=None, description="Set when a given tag contradicts what the image shows."
    )
    flipped: bool = Field(description="Whether the image was mirrored to the common orientation.")
    crop_box: CropBox
    score: float = Field(
        ge=0,
        le=100,
        description="Suspicion score 0-100 of the view (a relative score, never a risk; "
        "see the exam's `score_scale`), read at `score_threshold`.",
    )
    comparison: Comparison = Field(default="unilateral", description=COMPARISON_DOC)
    score_threshold: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="The threshold this view's score was read at (its `comparison`'s point).",
    )
    category: Category = Field(
        description="shared categorize(score, operating_point): what the view says."
    )
    score_map: ScoreMap | None = Field(
        default=None,
        description="Where the patch model found tissue standing out from the rest of this "
        "breast, over `crop_box`, zero outside the breast; render it at display size, scaled "
        "to `score` (the gateway does). None when the breast holds no patch.",
    )
    probabilities: Probabilities | None = Field(
        default=None,
        description="Deprecated: model 1's independent benign and malignant estimates (they "
        "did not sum to 1). None from model 2; the category is `category`.",
    )
    label: MammoLabel | None = Field(
        default=None, description="Deprecated: model 1's three-way label; None from model 2."
    )
    heatmaps: dict[Literal["benign", "malignant"], PngImage] = Field(
        default_factory=dict,
        description="Deprecated: full-size inline overlays, only when bc_service runs with "
        "IRMI_BC_HEATMAPS=true. Use `score_map`.",
    )
    timings_ms: dict[str, float] = Field(default_factory=dict)
    # What the exam's combine needs of this view (never serialised): the evidence maps,
    # P(malignant | lesion) and the density probabilities.
    _evidence: Any = PrivateAttr(default=None)
    _malignancy: float | None = PrivateAttr(default=None)
    _density: tuple[float, float, float] | None = PrivateAttr(default=None)


class Density(BaseModel):
    """A breast's background tissue (mammo-density: mini-MIAS's three classes)."""

    category: DensityClass
    probabilities: dict[DensityClass, float] = Field(
        description="Mean over the breast's views of the density model's probabilities."
    )
    note: str = Field(
        default="", description="What it means for this result (set for dense breasts)."
    )


class BreastResult(BaseModel):
    laterality: Laterality
    views: list[str] = Field(description="view_ids combined for this breast")
    score: float = Field(ge=0, le=100, description="The highest score of its views.")
    category: Category = Field(description="Review recommended iff any of its views is.")
    comparison: Comparison = Field(
        default="unilateral",
        description="`contralateral` when every view of it was read with the other breast.",
    )
    density: Density | None = Field(default=None, description="None without a density model.")
    malignancy: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="For doctors only, a secondary estimate: P(malignant | a lesion) of a "
        "flagged breast, given only while the model's benign-vs-malignant AUC clears its bar "
        "(the exam's `malignancy_note` says why it is absent). Never a headline.",
    )
    probabilities: Probabilities | None = Field(
        default=None, description="Deprecated: model 1's mean of its views; None from model 2."
    )
    label: MammoLabel | None = Field(
        default=None, description="Deprecated: model 1's three-way label; None from model 2."
    )


class ExamResult(BaseModel):
    views: list[ViewResult]
    breasts: list[BreastResult]
    score: float = Field(ge=0, le=100, description="The highest score of its breasts.")
    category: Category = Field(
        description="Review recommended when any breast (so any view) is flagged: view, "
        "breast and exam categories agree by construction."
    )
    score_scale: str = Field(default=SCORE_SCALE, description="What the 0-100 scores mean.")
    score_threshold: float = Field(
        ge=0, le=100, description="The 0-100 threshold every score of this exam is read at."
    )
    operating_point: OperatingPoint | None = Field(
        default=None,
        description="That threshold's operating point, with its measured sensitivity and "
        "specificity (the mammo-view card's), for views read `contralateral`; None only on "
        "the untrained fallback.",
    )
    unilateral_operating_point: OperatingPoint | None = Field(
        default=None,
        description="The point views read `unilateral` (no other breast) are read at.",
    )
    notes: list[str] = Field(
        default_factory=list,
        description="Sentences on how this exam was read (a breast without the other one to "
        "compare with, dense tissue).",
    )
    malignancy_note: str | None = Field(
        default=None,
        description="For doctors: why breasts carry no benign-vs-malignant estimate.",
    )
    probabilities: Probabilities | None = Field(
        default=None, description="Deprecated: model 1's worse breast; None from model 2."
    )
    label: MammoLabel | None = Field(
        default=None, description="Deprecated: model 1's three-way label; None from model 2."
    )
    models: list[ModelRef] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    disclaimer: str = "Screening aid, not a diagnosis: a radiologist must review these images."


class Exam(BaseModel):
    """What `GET /v1/exams/{id}` returns and what the SSE `result` event carries."""

    id: str
    status: ExamStatus
    created_at: str
    finished_at: str | None = None
    result: ExamResult | None = None
    error: dict[str, object] | None = Field(
        default=None, description="The error envelope's `error` object when status is failed."
    )


class ExamAccepted(BaseModel):
    """202 body of `POST /v1/exams`."""

    id: str
    status: ExamStatus
    status_url: str
    events_url: str


class ProgressEvent(BaseModel):
    """SSE `progress` event data."""

    stage: str = Field(description=f"One of {STAGES}, or 'queued' / 'combine'.")
    view: str | None = Field(default=None, description="view_id, None for exam-level stages")
    percent: float = Field(ge=0, le=100, description="Exam-level completion.")
    elapsed_ms: float
