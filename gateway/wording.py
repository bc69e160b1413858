"""What a result says, and to whom: the one place the words live. The web UI reads them as the
module ``/web/js/words.js`` (:func:`web_module`, served by :mod:`gateway.web_routes`); the PDF
report (:mod:`gateway.report`) and the FHIR export (:mod:`gateway.fhir`) read them here.

Patients (and any reader who is not a doctor) never read a diagnosis-like headline ("Abnormal",
"Normal", "Malignant", "Benign"), a probability, a score or a model hash: they read whether the
screening aid flags the images for their doctor's review. Doctors read the category beside the
score, the operating point's measured figures and the reliability of the answer. Outside the
validated population reads as "review recommended": fail-safe, never "no finding".
"""

from __future__ import annotations

import json
from typing import Any, Literal

from shared.contracts.screening import Category

Reader = Literal["patient", "doctor"]

FLAGGED = "Review recommended"
NOT_FLAGGED = "No finding flagged"
FLAGGED_TEXT = (
    "The screening aid flagged these images for your doctor to look at closely. This is not a "
    "diagnosis: only your doctor can say what the images show."
)
NOT_FLAGGED_TEXT = (
    "No finding flagged by the screening aid \u2014 your doctor still reviews the images."
)
OUTSIDE_TEXT = (
    "This image is outside what the screening aid was validated on: review recommended. Your "
    "doctor reviews the images."
)

#: The words of each category: ``title`` and ``text`` for patients, ``doctor`` for doctors,
#: ``badge`` for doctors' lists, ``cls`` the UI's style class.
CATEGORY: dict[str, dict[str, str]] = {
    Category.review_recommended.value: {
        "title": FLAGGED,
        "text": FLAGGED_TEXT,
        "doctor": "Review recommended",
        "badge": "Review recommended",
        "cls": "review",
    },
    Category.no_finding_flagged.value: {
        "title": NOT_FLAGGED,
        "text": NOT_FLAGGED_TEXT,
        "doctor": "No finding flagged",
        "badge": "No finding flagged",
        "cls": "clear",
    },
    Category.outside_population.value: {
        "title": FLAGGED,
        "text": OUTSIDE_TEXT,
        "doctor": "Outside the validated population: review recommended",
        "badge": "Outside validated population",
        "cls": "review",
    },
}

#: What the category means, for doctors, per study kind.
DOCTOR_SUMMARY: dict[str, dict[str, str]] = {
    "chest": {
        "review_recommended": "The score is at or above the operating point's threshold: the "
        "screen recommends review.",
        "no_finding_flagged": "The score is below the operating point's threshold: the screen "
        "flags no finding. The images still need review.",
        "outside_population": "This image is outside the population the model was validated "
        "on: its score is not trusted, and review is recommended.",
    },
    "mammography": {
        "review_recommended": "The exam's highest suspicion score is at or above the operating "
        "threshold: the screen recommends review.",
        "no_finding_flagged": "Every suspicion score is below the operating threshold: the "
        "screen flags no finding. The images still need review.",
    },
}

#: Words for shared.contracts.screening.ReliabilityReason.
REASONS: dict[str, str] = {
    "far_from_validated_population": "far from the films the model was validated on",
    "implausible_lung_mask": "the lung fields could not be located plausibly",
    "mirrored": "the film looks mirrored (left-right flipped)",
    "orientation_uncertain": "the film's orientation is uncertain",
    "unvalidated_view": "a view the model was not validated on",
}

#: The name of the overlay, per reader.
LOOKED: dict[str, str] = {
    "patient": "Where the screening aid looked",
    "doctor": "Where the model looked",
}
OVERLAY_NOTE: dict[str, str] = {
    "patient": "Where the screening aid looked: this is not a finding or a lesion, and only "
    "your doctor can say what the images show.",
    "doctor": "Where the model looked, not a lesion outline.",
}

#: The statement every result carries (the UI's footer; the README's first words).
SCREENING_AID = (
    "IRMI is a screening aid, not a diagnosis. Every result must be reviewed by a qualified "
    "clinician."
)
DISCLAIMER_LEAD = "Screening aid, not a diagnosis"

KIND_NAME = {"chest": "Chest X-ray", "mammography": "Mammogram"}


def reader_of(role: str) -> Reader:
    """Doctors read the doctors' words; everyone else (patients, their API keys) the patients'."""
    return "doctor" if role == "doctor" else "patient"


def words_of(category: Category | str | None) -> dict[str, str]:
    """A category's words; an unknown one reads as review recommended (fail-safe)."""
    key = category.value if isinstance(category, Category) else str(category)
    return CATEGORY.get(key, CATEGORY[Category.review_recommended.value])


def headline(category: Category | str | None, reader: Reader) -> str:
    w = words_of(category)
    return w["doctor"] if reader == "doctor" else w["title"]


def explanation(category: Category | str | None, kind: str, reader: Reader) -> str:
    """The sentence under the headline: what it means for a patient, why for a doctor."""
    if reader == "patient":
        return words_of(category)["text"]
    key = category.value if isinstance(category, Category) else str(category)
    return DOCTOR_SUMMARY.get(kind, {}).get(key, "")


def disclaimer(text: str | None) -> str:
    """A result's disclaimer as the UI writes it: "Screening aid, not a diagnosis. <rest>"."""
    rest = text or "A clinician must review these images and this result."
    if rest.lower().startswith(DISCLAIMER_LEAD.lower()):
        rest = rest[len(DISCLAIMER_LEAD) :].lstrip(" :.,-")
    return f"{DISCLAIMER_LEAD}. {rest[:1].upper()}{rest[1:]}"


def _all() -> dict[str, Any]:
    return {
        "FLAGGED": FLAGGED,
        "NOT_FLAGGED": NOT_FLAGGED,
        "FLAGGED_TEXT": FLAGGED_TEXT,
        "NOT_FLAGGED_TEXT": NOT_FLAGGED_TEXT,
        "OUTSIDE_TEXT": OUTSIDE_TEXT,
        "CATEGORY": CATEGORY,
        "DOCTOR_SUMMARY": DOCTOR_SUMMARY,
        "REASONS": REASONS,
        "LOOKED": LOOKED,
        "OVERLAY_NOTE": OVERLAY_NOTE,
        "SCREENING_AID": SCREENING_AID,
        "DISCLAIMER_LEAD": DISCLAIMER_LEAD,
    }


def web_module() -> str:
    """The words as an ES module for the web UI (``import { WORDS } from "./words.js"``)."""
    body = json.dumps(_all(), indent=1, ensure_ascii=False)
    return (
        f"// Generated by gateway/wording.py: edit the words there.\nexport const WORDS = {body};\n"
    )
