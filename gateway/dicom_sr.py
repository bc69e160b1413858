"""IRMI's result as a DICOM Comprehensive Structured Report (highdicom), in the source study.

The report carries what a reader needs to weigh the result: the screening category in words,
the 0-100 score and the threshold it was read at, the operating point's measured sensitivity
and specificity (with 95% CI, the number of films and where they were measured), each model's
name, version and sha256, and the statement that this is a screening aid, not a diagnosis.
Each analysed image is referenced by its SOP Instance UID (per view for mammography, with the
view's own score and category). Concepts without a standard code use the private coding
scheme ``99IRMI``; the rest are DCM, LOINC, SNOMED CT and UCUM codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from highdicom.sr import CodedConcept, ContentItem
from pydicom.dataset import Dataset

from gateway.dicom_findings import CATEGORY_WORDS, ResultSummary, ViewFinding
from shared.contracts.common import ModelRef
from shared.contracts.screening import Category, OperatingPoint, Rate

SCHEME = "99IRMI"
MANUFACTURER = "IRMI"


def _irmi(value: str, meaning: str) -> CodedConcept:
    return hd.sr.CodedConcept(value, SCHEME, meaning)


def _num(name: CodedConcept, value: float, unit: tuple[str, str]) -> ContentItem:
    return hd.sr.NumContentItem(
        name=name,
        value=round(float(value), 4),
        unit=hd.sr.CodedConcept(unit[0], "UCUM", unit[1]),
        relationship_type="CONTAINS",
    )


def _text(name: CodedConcept, value: str) -> ContentItem:
    return hd.sr.TextContentItem(name=name, value=value[:1024], relationship_type="CONTAINS")


def _category(value: Category) -> ContentItem:
    return hd.sr.CodeContentItem(
        name=_irmi("CATEGORY", "Screening category"),
        value=_irmi(value.value.upper()[:16], CATEGORY_WORDS[value]),
        relationship_type="CONTAINS",
    )


def _rate(name: str, rate: Rate) -> list[ContentItem]:
    lo, hi = rate.ci95
    return [
        _num(_irmi(name.upper()[:16], f"Measured {name}"), rate.value, ("1", "no units")),
        _text(
            _irmi(f"{name.upper()[:12]}_CI", f"Measured {name}, 95% CI and films"),
            f"{rate.value:.3f} (95% CI {lo:.3f}-{hi:.3f}, n={rate.n})",
        ),
    ]


def _operating_point(point: OperatingPoint) -> list[ContentItem]:
    items = [
        _text(_irmi("OP_SOURCE", "Operating point source"), point.source),
        *_rate("sensitivity", point.sensitivity),
        *_rate("specificity", point.specificity),
    ]
    if point.measured_on:
        items.append(_text(_irmi("OP_MEASURED", "Operating point measured on"), point.measured_on))
    return items


def _model(model: ModelRef) -> list[ContentItem]:
    return [
        _text(hd.sr.CodedConcept("111001", "DCM", "Algorithm Name"), model.name),
        _text(hd.sr.CodedConcept("111003", "DCM", "Algorithm Version"), model.version),
        _text(_irmi("MODEL_SHA256", "Model file SHA-256"), model.sha256),
    ]


def _image(view: ViewFinding) -> ContentItem:
    return hd.sr.ImageContentItem(
        name=hd.sr.CodedConcept("260753009", "SCT", "Source"),
        referenced_sop_class_uid=view.sop_class_uid,
        referenced_sop_instance_uid=view.sop_instance_uid,
        relationship_type="CONTAINS",
    )


def _view(view: ViewFinding) -> ContentItem:
    container = hd.sr.ContainerContentItem(
        name=_irmi("VIEW", "Analysed view"), relationship_type="CONTAINS"
    )
    items: list[ContentItem] = [_image(view)]
    if view.tag:
        items.append(_text(_irmi("VIEW_TAG", "View"), view.tag))
    if view.score is not None:
        items.append(_num(_irmi("SCORE", "Suspicion score (0-100)"), view.score, ("1", "no units")))
    if view.category is not None:
        items.append(_category(view.category))
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def content(summary: ResultSummary) -> ContentItem:
    """The report's content tree: one root container."""
    root = hd.sr.ContainerContentItem(
        name=hd.sr.CodedConcept("18748-4", "LN", "Diagnostic imaging report")
    )
    items: list[ContentItem] = [
        _text(hd.sr.CodedConcept("121106", "DCM", "Comment"), summary.statement),
        _text(_irmi("EXAM", "Screening exam"), f"IRMI {summary.kind} screen"),
        _category(summary.category),
    ]
    if summary.score is not None:
        items.append(
            _num(_irmi("SCORE", "Suspicion score (0-100)"), summary.score, ("1", "no units"))
        )
    if summary.score_threshold is not None:
        items.append(
            _num(
                _irmi("THRESHOLD", "Operating threshold (0-100)"),
                summary.score_threshold,
                ("1", "no units"),
            )
        )
    if summary.operating_point is not None:
        items += _operating_point(summary.operating_point)
    for model in summary.models:
        items += _model(model)
    if summary.kind == "mammography":
        items += [_view(v) for v in summary.views]
    else:
        items += [_image(v) for v in summary.views]
    root.ContentSequence = hd.sr.ContentSequence(items)
    return root


def build_sr(
    evidence: Sequence[Dataset], summary: ResultSummary, series_uid: str, sop_uid: str
) -> Dataset:
    """The SR (same StudyInstanceUID and patient as ``evidence``, the analysed images)."""
    return hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=content(summary),
        series_instance_uid=series_uid,
        series_number=9901,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description="IRMI screening result (not a diagnosis)",
    )
