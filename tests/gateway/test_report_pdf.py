"""The PDF report built alone (gateway/report.py) from a small record: the reader's words, and
a name outside Latin-1 printed as entered with DejaVu Sans, or replaced (not crashing) when the
system has no such font."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gateway import report, wording
from gateway.models import Study
from gateway.schemas import StudyDetail
from gateway.study_record import Finding, Picture, Reading, Reply, StudyRecord
from shared.contracts.common import ModelRef
from shared.contracts.screening import Category, OperatingPoint, Rate

MODEL = ModelRef(name="mammo-view", version="3", sha256="ab" * 32)
POINT = OperatingPoint(
    source="card",
    score_threshold=41.5,
    sensitivity=Rate(value=0.8, ci95=(0.7, 0.88), n=90),
    specificity=Rate(value=0.6, ci95=(0.5, 0.7), n=120),
    measured_on="test split",
    model=MODEL,
)


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((120, 90), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _record(reader: wording.Reader, name: str) -> StudyRecord:
    at = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
    study = Study(
        id="f" * 32, owner_id="o" * 32, kind="mammography", status="succeeded",
        created_at=at, updated_at=at, finished_at=at,
    )  # fmt: skip
    reading = Reading(
        category=Category.review_recommended,
        score=63.0,
        threshold=41.5,
        operating_point=POINT,
        models=[MODEL],
        disclaimer="Screening aid, not a diagnosis: a radiologist must review these images.",
        parts=[
            Finding("Right breast", Category.no_finding_flagged, 12.0),
            Finding("Left breast", Category.review_recommended, 63.0),
        ],
    )
    return StudyRecord(
        study=study,
        detail=StudyDetail.model_construct(),
        patient_name=name,
        reader=reader,
        reading=reading,
        replies=[Reply("Dr Ada", "radiology", "Please come back for an ultrasound.", at)],
        pictures=[Picture("View L-MLO", _png(90), _png(160))],
    )


def _text(pdf: bytes) -> str:
    from pypdf import PdfReader

    return " ".join(
        " ".join(p.extract_text() or "" for p in PdfReader(io.BytesIO(pdf)).pages).split()
    )


def test_doctor_and_patient_words() -> None:
    doctor = _text(report.build_pdf(_record("doctor", "Ana Lima")))
    assert "Left breast Review recommended (score 63.0 / 100)" in doctor
    assert "Sensitivity: 80.0% (95% CI 70.0%\u201388.0%, n = 90 malignant views)" in doctor
    assert "Specificity: 60.0% (95% CI 50.0%\u201370.0%, n = 120 other views)" in doctor
    assert MODEL.sha256 in doctor.replace(" ", "")
    patient = _text(report.build_pdf(_record("patient", "Ana Lima")))
    assert "Right breast No finding flagged" in patient and "score" not in patient.lower()
    assert "Sensitivity" not in patient and MODEL.sha256 not in patient.replace(" ", "")
    assert "Please come back for an ultrasound." in patient
    assert wording.SCREENING_AID in patient


def test_names_outside_latin1(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "Łucja Żółć 李小龍"
    if report._font() is not None:
        assert "Łucja Żółć" in _text(report.build_pdf(_record("patient", name)))
    monkeypatch.setattr(report, "FONT_CANDIDATES", (Path("/nonexistent/DejaVuSans.ttf"),))
    text = _text(report.build_pdf(_record("patient", name)))
    assert "?ucja ?ó?? ???" in text  # Helvetica: what Latin-1 cannot print is replaced


def test_a_flagged_chest_films_findings_for_doctors_only() -> None:
    from dataclasses import replace

    from shared.contracts.chest import Finding as ChestFinding

    record = _record("doctor", "Ana Lima")
    record.study.kind = "chest"
    pneumonia = ChestFinding(name="pneumonia", probability=0.7, subtypes={"bacterial": 0.6})
    record.reading = replace(record.reading, parts=[], findings=[pneumonia])
    assert "Pneumonia: 70.0% (bacterial 60.0%)" in _text(report.build_pdf(record))
    record.reader = "patient"
    assert "Pneumonia" not in _text(report.build_pdf(record))
