"""Mammography exam contract (bc_service ⇄ gateway), including the SSE events."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from shared.contracts.common import CropBox, ModelRef, PngImage

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
    probabilities: Probabilities
    label: MammoLabel
    heatmaps: dict[Literal["benign", "malignant"], PngImage] = Field(default_factory=dict)
    timings_ms: dict[str, float] = Field(default_factory=dict)


class BreastResult(BaseModel):
    laterality: Laterality
    views: list[str] = Field(description="view_ids combined for this breast")
    probabilities: Probabilities
    label: MammoLabel


class ExamResult(BaseModel):
    views: list[ViewResult]
    breasts: list[BreastResult]
    probabilities: Probabilities = Field(description="Exam level: the worse breast.")
    label: MammoLabel
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
