"""A finished study as a FHIR R4B ``DiagnosticReport`` with contained ``Observation``s, for EHR
integration, validated with the ``fhir.resources`` R4B models (R4B is wire-compatible with R4
for these resources).

The Observations: the category (what the result says), and for doctors (the same rules as the
UI, :mod:`gateway.wording`) the 0-100 score and the operating point it was read at, with the
measured sensitivity and specificity and their 95% CIs; one per model version; for a
mammogram one per breast. The conclusion is the not-a-diagnosis text: the category in the
reader's words, what it means, and the result's disclaimer.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway import wording
from gateway.study_record import StudyRecord
from shared.contracts.screening import Category, OperatingPoint, Rate

if TYPE_CHECKING:  # fhir.resources is imported on first use: ~0.1 s off the gateway's start-up
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

MEDIA_TYPE = "application/fhir+json"
SYSTEM = "urn:irmi"
CATEGORY_SYSTEM = f"{SYSTEM}:category"
OBSERVATION_SYSTEM = f"{SYSTEM}:observation"


def _when(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _code(code: str, text: str) -> dict[str, Any]:
    return {"coding": [{"system": OBSERVATION_SYSTEM, "code": code, "display": text}], "text": text}


def _category_concept(category: Category, reader: wording.Reader) -> dict[str, Any]:
    words = wording.headline(category, reader)
    return {
        "coding": [{"system": CATEGORY_SYSTEM, "code": category.value, "display": words}],
        "text": words,
    }


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": round(float(value), 4), "unit": unit}


def _rate_components(name: str, rate: Rate) -> list[dict[str, Any]]:
    lo, hi = rate.ci95
    return [
        {"code": _code(name, name.capitalize()), "valueQuantity": _quantity(rate.value, "1")},
        {
            "code": _code(f"{name}-ci95-low", f"{name.capitalize()}, 95% CI lower bound"),
            "valueQuantity": _quantity(lo, "1"),
        },
        {
            "code": _code(f"{name}-ci95-high", f"{name.capitalize()}, 95% CI upper bound"),
            "valueQuantity": _quantity(hi, "1"),
        },
        {"code": _code(f"{name}-n", f"{name.capitalize()}, films counted"), "valueInteger": rate.n},
    ]


def _operating_point(point: OperatingPoint) -> dict[str, Any]:
    return {
        "code": _code("operating-point", "Operating point (0-100 score threshold)"),
        "valueQuantity": _quantity(point.score_threshold, "score"),
        "component": _rate_components("sensitivity", point.sensitivity)
        + _rate_components("specificity", point.specificity),
        "method": {
            "text": f"{'site' if point.source == 'site' else 'model card'} operating point of "
            f"{point.model.name} version {point.model.version}"
        },
        "note": [{"text": f"Measured on: {point.measured_on or 'not stated'}"}],
    }


def conclusion(record: StudyRecord) -> str:
    r, reader = record.reading, record.reader
    parts = [
        wording.headline(r.category, reader) + ".",
        wording.explanation(r.category, record.study.kind, reader),
        wording.disclaimer(r.disclaimer),
    ]
    return " ".join(p for p in parts if p)


def diagnostic_report(record: StudyRecord) -> DiagnosticReport:
    """The validated DiagnosticReport of a finished study."""
    study, r, reader = record.study, record.reading, record.reader
    subject = {
        "identifier": {"system": f"{SYSTEM}:user", "value": study.owner_id},
        "display": record.patient_name,
    }
    when = _when(study.created_at)
    observations: list[dict[str, Any]] = []

    def observe(oid: str, body: dict[str, Any]) -> None:
        observations.append(
            {
                "resourceType": "Observation",
                "id": oid,
                "status": "final",
                "subject": subject,
                "effectiveDateTime": when,
                **body,
            }
        )

    observe(
        "category",
        {
            "code": _code("category", "Screening aid category"),
            "valueCodeableConcept": _category_concept(r.category, reader),
        },
    )
    if reader == "doctor" and r.score is not None:
        observe(
            "score",
            {
                "code": _code("score", "Screening score (0-100)"),
                "valueQuantity": _quantity(r.score, "score"),
            },
        )
    if reader == "doctor" and r.operating_point is not None:
        observe("operating-point", _operating_point(r.operating_point))
    for i, part in enumerate(r.parts):
        body: dict[str, Any] = {
            "code": _code("breast-category", "Screening aid category of a breast"),
            "bodySite": {"text": part.label},
            "valueCodeableConcept": _category_concept(part.category, reader),
        }
        if reader == "doctor" and part.score is not None:
            body["component"] = [
                {
                    "code": _code("score", "Screening score (0-100)"),
                    "valueQuantity": _quantity(part.score, "score"),
                }
            ]
        observe(f"breast-{i}", body)
    for i, m in enumerate(r.models):
        body = {
            "code": _code("model-version", "Model version"),
            "valueString": f"{m.name} {m.version}",
        }
        if reader == "doctor":
            body["note"] = [{"text": f"sha256 {m.sha256}"}]
        observe(f"model-{i}", body)

    kind = wording.KIND_NAME.get(study.kind, study.kind)
    report = {
        "resourceType": "DiagnosticReport",
        "id": study.id,
        "identifier": [{"system": f"{SYSTEM}:study", "value": study.id}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                        "code": "RAD",
                        "display": "Radiology",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": f"{SYSTEM}:study-kind", "code": study.kind, "display": kind}],
            "text": f"{kind}: screening aid result",
        },
        "subject": subject,
        "effectiveDateTime": when,
        "issued": _when(study.finished_at),
        "performer": [{"display": "IRMI screening aid"}],
        "contained": observations,
        "result": [{"reference": f"#{o['id']}"} for o in observations],
        "conclusion": conclusion(record),
        "conclusionCode": [_category_concept(r.category, reader)],
    }
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    return DiagnosticReport.model_validate(report)
