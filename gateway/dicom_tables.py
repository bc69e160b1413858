"""ORM tables of the DICOM integration: the studies received over DICOM (C-STORE through the
DICOM node, or STOW-RS), their instances, and the results sent back to the PACS.

A received study is ``receiving`` while instances arrive; ``open_uid`` (its StudyInstanceUID
while receiving, NULL after) is unique, so concurrent instances of one study always join one
row. After ``dicom_quiet_s`` without a new instance the worker routes it (:mod:`gateway.
dicom_routing`): ``analysing`` (an IRMI study runs), then ``done``, ``refused`` (with the
reason) or ``failed``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.models import Base, new_id
from shared.clock import now


class DicomStudy(Base):
    __tablename__ = "dicom_studies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    open_uid: Mapped[str | None] = mapped_column(String(64), unique=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(64))  # the calling AE title, or "stow-rs"
    status: Mapped[str] = mapped_column(String(16), index=True)
    instances: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=now)
    last_received_at: Mapped[datetime] = mapped_column(default=now)
    claimed_at: Mapped[datetime | None] = mapped_column()  # the routing worker's lease
    kind: Mapped[str | None] = mapped_column(String(16))  # chest | mammography
    study_id: Mapped[str | None] = mapped_column(String(32), index=True)  # the IRMI study
    reason: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # refusal/failure envelope
    finished_at: Mapped[datetime | None] = mapped_column()


class DicomInstance(Base):
    __tablename__ = "dicom_instances"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    dicom_study_id: Mapped[str] = mapped_column(
        ForeignKey("dicom_studies.id", ondelete="CASCADE"), index=True
    )
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    series_uid: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(default=now)


class DicomExport(Base):
    """One result object (SR or Secondary Capture) for the PACS, built once and sent until it
    is accepted or its attempts run out: pending -> sent | failed."""

    __tablename__ = "dicom_exports"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    dicom_study_id: Mapped[str] = mapped_column(
        ForeignKey("dicom_studies.id", ondelete="CASCADE"), index=True
    )
    study_id: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # sr | sc
    study_uid: Mapped[str] = mapped_column(String(64))
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(default=now, index=True)
    created_at: Mapped[datetime] = mapped_column(default=now)
    sent_at: Mapped[datetime | None] = mapped_column()
