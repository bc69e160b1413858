"""Chest X-ray prediction contract (tb_service ⇄ gateway)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from shared.contracts.common import CropBox, ModelRef, PngImage
from shared.contracts.screening import Reliability


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
    label: Literal["normal", "abnormal"]
    probabilities: dict[Literal["normal", "abnormal"], float]
    score: float = Field(ge=0, le=100, description="Calibrated abnormality score, 0-100.")
    threshold: float = Field(ge=0, le=1, description="Operating threshold on P(abnormal).")
    findings: list[Finding] = Field(default_factory=list)
    heatmap: PngImage | None = Field(
        default=None,
        description="RGBA PNG the size of the original image: color = evidence for 'abnormal', "
        "alpha = strength; draw it over the image.",
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
