"""ORM tables of site validation. A run's images are not studies: they never appear in any
study listing, are never shown to patients, and are deleted when the run's retention ends
(the report and the per-image scores stay until the run is deleted). ``file_name`` is the
site's own name for an image, possibly holding personal data: it is stored for the admin's
per-image CSV and is never logged."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.models import Base, new_id
from shared.clock import now


class ValidationRun(Base):
    __tablename__ = "validation_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    modality: Mapped[str] = mapped_column(String(16))  # chest | mammography
    target: Mapped[str] = mapped_column(String(64))  # e.g. abnormal, tuberculosis, workup
    reference_standard: Mapped[str] = mapped_column(Text, default="")
    # open (taking uploads) | queued | running | done | failed
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now)
    retain_images_until: Mapped[datetime] = mapped_column()
    images_deleted_at: Mapped[datetime | None] = mapped_column()
    total: Mapped[int] = mapped_column(Integer, default=0)
    scored: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column()  # the replica scoring it
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ValidationItem(Base):
    """One labelled unit of a run: a chest film, or the views of one breast."""

    __tablename__ = "validation_items"
    __table_args__ = (Index("ix_validation_items_run_status", "run_id", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    run_id: Mapped[str] = mapped_column(ForeignKey("validation_runs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    file_name: Mapped[str] = mapped_column(Text)  # personal data: never logged
    label: Mapped[int] = mapped_column(Integer)  # 1 = target condition present
    subgroups: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # the de-identified image(s) as sent to the service: [{"key", "media_type"}]
    blobs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|scored|failed
    probability: Mapped[float | None] = mapped_column(Float)
    score: Mapped[float | None] = mapped_column(Float)
    outside_population: Mapped[bool | None] = mapped_column(Boolean)
    reliability: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    model: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # name, version, sha256
    # the operating point the service read it at (shared OperatingPoint), as returned
    operating_point: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(64))


class SitePoint(Base):
    """A site operating point: a version per model name, adopted from a run, tied to the exact
    model (name, version, sha256) it was measured on."""

    __tablename__ = "site_points"
    __table_args__ = (Index("ix_site_points_model", "modality", "model_name", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    modality: Mapped[str] = mapped_column(String(16))
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(32))
    model_sha256: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str] = mapped_column(String(32), index=True)  # outlives the run's deletion
    # active | superseded (a later one adopted) | rolled_back
    status: Mapped[str] = mapped_column(String(16))
    point: Mapped[dict[str, Any]] = mapped_column(JSON)  # shared OperatingPoint
    choice: Mapped[dict[str, Any]] = mapped_column(JSON)  # how the threshold was chosen
    calibration: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    population: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    adopted_by: Mapped[str | None] = mapped_column(String(32))
    adopted_at: Mapped[datetime] = mapped_column(default=now)
    ended_by: Mapped[str | None] = mapped_column(String(32))
    ended_at: Mapped[datetime | None] = mapped_column()
