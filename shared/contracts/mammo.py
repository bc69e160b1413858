"""Mammography exam contract (bc_service ⇄ gateway), including the SSE events."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from shared.contracts.common import CropBox, ModelRef, PngImage
from shared.contracts.screening import Category, OperatingPoint, ScoreMap

ViewTag = Literal["L-CC", "R-CC", "L-MLO", "R-MLO"]
Laterality = Literal["L", "R"]
ViewKind = Literal["CC", "MLO"]
MammoLabel = Literal["normal", "benign", "malignant"]
ExamStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]

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
        description="Suspicion score 0-100 of the view (a relative score, never a risk): "
        "model 1's is 100 x P(malignant), read at the exam's `operating_point`.",
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
    probabilities: Probabilities = Field(
        description="For doctors: model 1's independent benign and malignant estimates "
        "(they do not sum to 1). Never a headline; the category is `category`."
    )
    label: MammoLabel = Field(description="Deprecated: the old three-way label.")
    heatmaps: dict[Literal["benign", "malignant"], PngImage] = Field(
        default_factory=dict,
        description="Deprecated: full-size inline overlays, only when bc_service runs with "
        "IRMI_BC_HEATMAPS=true. Use `score_map`.",
    )
    timings_ms: dict[str, float] = Field(default_factory=dict)


class BreastResult(BaseModel):
    laterality: Laterality
    views: list[str] = Field(description="view_ids combined for this breast")
    score: float = Field(
        ge=0, le=100, description="The highest score of its views: flagged iff a view is."
    )
    category: Category
    probabilities: Probabilities = Field(description="For doctors: the mean of its views.")
    label: MammoLabel = Field(description="Deprecated: the old three-way label.")


class ExamResult(BaseModel):
    views: list[ViewResult]
    breasts: list[BreastResult]
    score: float = Field(ge=0, le=100, description="The highest score of its breasts.")
    category: Category = Field(
        description="Review recommended when any breast (so any view) is flagged: view, "
        "breast and exam categories agree by construction (scores are maxima, one point)."
    )
    score_threshold: float = Field(
        ge=0, le=100, description="The 0-100 threshold every score of this exam is read at."
    )
    operating_point: OperatingPoint | None = Field(
        default=None,
        description="That threshold's operating point, with its measured sensitivity and "
        "specificity (the mammo-view card's); None only on the untrained fallback.",
    )
    probabilities: Probabilities = Field(description="Exam level: the worse breast.")
    label: MammoLabel = Field(description="Deprecated: the old three-way label.")
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
