"""Public models of the validation API (never ORM rows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from gateway.validation.tables import SitePoint, ValidationRun
from shared.contracts.screening import OperatingPoint

Modality = Literal["chest", "mammography"]
RunStatus = Literal["open", "queued", "running", "done", "failed"]


class RunCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["District hospital 2026 films"])
    modality: Modality
    target: str = Field(
        default="abnormal",
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9_\-]+$",
        description="The target condition the labels say is present (chest: `abnormal` vs "
        "normal, or a named finding such as `tuberculosis` when the labels come from a "
        "reference standard; mammography: `workup`, per breast).",
    )
    reference_standard: str = Field(
        default="",
        max_length=2000,
        description="Where the labels come from (e.g. culture, radiologist consensus).",
    )
    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=3650,
        description="Days the run keeps its images (the gateway's default when omitted); "
        "the report and per-image scores stay until the run is deleted.",
    )


class RunPublic(BaseModel):
    id: str
    name: str
    modality: Modality
    target: str
    reference_standard: str
    status: RunStatus
    created_at: datetime
    updated_at: datetime
    retain_images_until: datetime
    images_deleted_at: datetime | None
    total: int = Field(description="Labelled units (films; breasts for mammography).")
    scored: int
    failed: int = Field(description="Units the service refused (see the report's failures).")
    report_url: str | None = None
    events_url: str

    @classmethod
    def of(cls, run: ValidationRun) -> RunPublic:
        base = f"/v1/admin/validation-runs/{run.id}"
        return cls(
            id=run.id,
            name=run.name,
            modality=run.modality,
            target=run.target,
            reference_standard=run.reference_standard,
            status=run.status,
            created_at=run.created_at,
            updated_at=run.updated_at,
            retain_images_until=run.retain_images_until,
            images_deleted_at=run.images_deleted_at,
            total=run.total,
            scored=run.scored,
            failed=run.failed,
            report_url=f"{base}/report" if run.report is not None else None,
            events_url=f"{base}/events",
        )


class RunList(BaseModel):
    items: list[RunPublic]


class UploadAccepted(BaseModel):
    added: int = Field(description="Labelled units added by this upload.")
    images: int
    total: int = Field(description="Units in the run now.")


class SitePointPublic(BaseModel):
    id: str
    version: int = Field(description="Per model name, from 1.")
    status: Literal["active", "superseded", "rolled_back"]
    modality: Modality
    point: OperatingPoint
    choice: dict[str, Any]
    calibration: dict[str, Any] | None
    population: dict[str, Any] | None = Field(
        description="The adopted run's mean position in the model's population space "
        "(films within the limit of it are not flagged far from the validated population)."
    )
    run_id: str
    adopted_by: str | None
    adopted_at: datetime
    ended_by: str | None
    ended_at: datetime | None

    @classmethod
    def of(cls, row: SitePoint) -> SitePointPublic:
        pop = dict(row.population or {})
        if "mean" in pop:
            pop["mean"] = f"{len(pop['mean'])} coordinates"
        return cls(
            id=row.id,
            version=row.version,
            status=row.status,
            modality=row.modality,
            point=OperatingPoint.model_validate(row.point),
            choice=row.choice,
            calibration=row.calibration,
            population=pop or None,
            run_id=row.run_id,
            adopted_by=row.adopted_by,
            adopted_at=row.adopted_at,
            ended_by=row.ended_by,
            ended_at=row.ended_at,
        )


class SitePointList(BaseModel):
    active: SitePointPublic | None
    items: list[SitePointPublic] = Field(description="Every version, latest first.")


class RollbackRequest(BaseModel):
    modality: Modality = "chest"


class PreviewPublic(BaseModel):
    point: OperatingPoint
    figures: dict[str, Any] = Field(
        description="Sensitivity, specificity, PPV, NPV at the point with 95% CIs, counts."
    )
    choice: dict[str, Any]
    calibration: dict[str, Any] | None
    population: dict[str, Any] | None
    in_sample: bool = Field(
        description="Always true: chosen and measured on the same films, so optimistic."
    )
