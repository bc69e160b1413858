"""Public (wire) models of the gateway: ``XCreate`` in, ``XPublic`` out; never ORM rows."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from gateway.operating_point import EffectiveReading
from shared.contracts.chest import ChestPrediction
from shared.contracts.common import CropBox
from shared.contracts.mammo import BreastResult, ExamResult, ProgressEvent, ViewResult
from shared.contracts.screening import Category, OperatingPoint
from shared.errors import ErrorBody

Role = Literal["patient", "doctor", "admin", "integration"]  # integration: a PACS (DICOM)
SignupRole = Literal["patient", "doctor"]  # admins are created by `python -m gateway.admin`
DoctorStatus = Literal["pending", "verified", "rejected", "suspended"]
Specialty = Literal["radiology", "pulmonology", "oncology", "breast_surgery", "general_practice"]
SPECIALTIES: list[str] = list(Specialty.__args__)  # type: ignore[attr-defined]
Scope = Literal["predict", "studies"]
StudyKind = Literal["chest", "mammography"]
StudyStatus = Literal["queued", "running", "succeeded", "failed"]
ConsultationStatus = Literal["open", "answered"]
StudyAccess = Literal["shared", "revoked", "deleted", "suspended"]

Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        max_length=320,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    ),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


# ----------------------------------------------------------------------------- accounts
class SignupRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.org",
                    "password": "correct-horse-42",
                    "full_name": "Ada Patient",
                    "role": "patient",
                },
                {
                    "email": "grace@clinic.example",
                    "password": "radiology-rocks-7",
                    "full_name": "Dr Grace Hopper",
                    "role": "doctor",
                    "specialty": "radiology",
                    "licence_number": "GMC-1234567",
                },
            ]
        }
    )

    email: Email
    password: str = Field(min_length=1, max_length=1024, description="Rules: see the 422.")
    full_name: Name
    role: SignupRole = Field(
        default="patient",
        description="`doctor` accounts stay `pending` until an admin verifies them; admin "
        "accounts are never created by sign-up.",
    )
    specialty: Specialty | None = Field(default=None, description="Required for doctors.")
    licence_number: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=64)] | None
    ) = Field(default=None, description="Required for doctors.")


class LoginRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"email": "ada@example.org", "password": "correct-horse-42"}]
        }
    )

    email: Email
    password: str = Field(max_length=1024)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"refresh_token": "kq3V...single-use-token"}]}
    )

    refresh_token: str = Field(max_length=200)


class UserPublic(BaseModel):
    id: str
    email: str
    full_name: str
    role: Role
    specialty: Specialty | None = None
    licence_number: str | None = None
    doctor_status: DoctorStatus | None = Field(
        default=None,
        description="Doctors only: `pending` until an admin verifies the licence; only a "
        "`verified` doctor is listed to patients and can receive studies.",
    )
    created_at: datetime


class TokenPair(BaseModel):
    access_token: str = Field(description="JWT; send as `Authorization: Bearer <token>`.")
    refresh_token: str = Field(
        description="Opaque; single use: POST it to /v1/auth/refresh for a new pair."
    )
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(description="Seconds until the access token expires.")
    user: UserPublic


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "hospital PACS bridge", "scopes": ["predict"]}]}
    )

    name: Name
    scopes: list[Scope] = Field(
        min_length=1,
        description="`predict`: the stateless /v1/predict routes; `studies`: the key owner's "
        "studies (upload, history, detail, images).",
    )


class ApiKeyPublic(BaseModel):
    id: str
    name: str
    scopes: list[Scope]
    prefix: str = Field(description="First characters of the key, to recognise it.")
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The key itself. Shown once: store it now; send as X-API-Key.")


class ApiKeyList(BaseModel):
    items: list[ApiKeyPublic]


# ----------------------------------------------------------------------------- studies
class FileRef(BaseModel):
    """A stored PNG served by the gateway (authorization checked on every read)."""

    url: str = Field(examples=["/v1/studies/3f2a.../heatmaps/score_map"])
    media_type: str = "image/png"
    width: int | None = None
    height: int | None = None
    covers: CropBox | None = Field(
        default=None,
        description="The part of the original image (its pixels) the PNG lies over, stretched "
        "to it; None: the whole image.",
    )


class ChestResult(ChestPrediction):
    """tb_service's prediction as stored, plus the reading the gateway shows (``effective``);
    ``heatmap`` is the gateway's URL of the overlay it rendered from ``score_map`` (of the
    inline PNG in results stored before)."""

    category: Category | None = Field(  # type: ignore[assignment]
        default=None,
        description="tb_service's category at the card's point; None in results stored before "
        "operating points. Show `effective.category`.",
    )
    operating_point: OperatingPoint | None = Field(  # type: ignore[assignment]
        default=None,
        description="The model card's point tb_service returned; None in results stored before "
        "operating points.",
    )
    effective: EffectiveReading = Field(
        description="The category at the effective operating point (the card's now, a site's "
        "once adopted): what patients and doctors are shown."
    )
    heatmap: FileRef | None = Field(  # type: ignore[assignment]
        default=None,
        description="Where the model looked: the overlay rendered at display size from "
        "`score_map`, read at the effective point (see `covers` for where it lies). Not a "
        "lesion outline.",
    )


def _legacy_category(data: Any) -> Any:
    """A mammography result stored before categories: the category its label was shown as
    (benign and malignant were both findings to review)."""
    if isinstance(data, dict) and data.get("category") is None and "label" in data:
        flagged = data["label"] != "normal"
        cat = Category.review_recommended if flagged else Category.no_finding_flagged
        return {**data, "category": cat, "basis": "legacy_label"}
    return data


def mammo_category(stored: dict[str, Any]) -> Category:
    """The category of a stored mammography result (a legacy one's from its label)."""
    return Category(_legacy_category(stored)["category"])


_LEGACY = "None in results stored before categories (`basis` `legacy_label`)."
MammoBasis = Literal["operating_point", "legacy_label"]


class ViewResultPublic(ViewResult):
    """A view as stored: ``heatmaps`` holds the gateway's URLs: ``score_map`` (rendered from
    the score map, over its `covers` box), or ``benign``/``malignant`` in results stored before."""

    score: float | None = Field(default=None, ge=0, le=100, description=_LEGACY)  # type: ignore[assignment]
    category: Category
    basis: MammoBasis = "operating_point"
    heatmaps: dict[str, FileRef] = Field(default_factory=dict)  # type: ignore[assignment]
    _legacy = model_validator(mode="before")(_legacy_category)


class BreastResultPublic(BreastResult):
    score: float | None = Field(default=None, ge=0, le=100, description=_LEGACY)  # type: ignore[assignment]
    category: Category
    basis: MammoBasis = "operating_point"
    _legacy = model_validator(mode="before")(_legacy_category)


class ExamResultPublic(ExamResult):
    """bc_service's exam result, its inline heatmaps replaced by the gateway's URLs. A result
    stored before categories reads its category from its label (`basis` `legacy_label`)."""

    views: list[ViewResultPublic]  # type: ignore[assignment]
    breasts: list[BreastResultPublic]  # type: ignore[assignment]
    score: float | None = Field(default=None, ge=0, le=100, description=_LEGACY)  # type: ignore[assignment]
    category: Category
    basis: MammoBasis = "operating_point"
    score_threshold: float | None = Field(default=None, ge=0, le=100, description=_LEGACY)  # type: ignore[assignment]
    _legacy = model_validator(mode="before")(_legacy_category)


class StudyImage(BaseModel):
    id: str
    name: str = Field(description="View tag (L-CC, ...), 'view-N' when untagged, or 'image'.")
    media_type: str
    size: int
    url: str = Field(description="The original as uploaded: a download (DICOM included).")
    display_url: str = Field(
        description="What to show: the display PNG (windowed; `?preset=lung|mammography`)."
    )
    thumbnail_url: str = Field(description="A small JPEG for lists.")


class StudySummary(BaseModel):
    id: str
    kind: StudyKind
    status: StudyStatus
    label: str | None = Field(default=None, description="The system's label once succeeded.")
    category: Category | None = Field(
        default=None,
        description="A chest study's category at its effective operating point once succeeded "
        "(mammography: None, read `label`).",
    )
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    thumbnail_url: str | None = Field(
        default=None,
        description="A small JPEG of the first uploaded image (what a history list shows).",
    )


class StudyDetail(StudySummary):
    owner_id: str
    patient_name: str | None = Field(
        default=None,
        description="The patient's name as entered at sign-up (what a printed study shows).",
    )
    images: list[StudyImage]
    chest_result: ChestResult | None = None
    mammography_result: ExamResultPublic | None = None
    error: ErrorBody | None = None
    progress: ProgressEvent | None = Field(
        default=None, description="Latest progress of a running mammography study."
    )
    events_url: str | None = Field(default=None, description="SSE stream (mammography).")


class StudyPage(BaseModel):
    items: list[StudySummary]
    total: int
    limit: int
    offset: int


class StudyAccepted(BaseModel):
    """202 body of a mammography upload: follow ``events_url`` (SSE) or poll ``study_url``."""

    id: str
    status: StudyStatus
    study_url: str
    events_url: str


# ----------------------------------------------------------------------------- doctors
class DoctorPublic(BaseModel):
    id: str
    full_name: str
    specialty: Specialty
    licence_number: str | None = None
    rating: float | None = Field(default=None, description="Mean of patients' ratings, 1-5.")
    ratings_count: int = 0


class DoctorList(BaseModel):
    items: list[DoctorPublic]
    total: int = Field(description="Doctors matching the filter, all pages together.")
    limit: int
    offset: int


class SpecialtyList(BaseModel):
    items: list[Specialty]


# ----------------------------------------------------------------------------- consultations
class ConsultationCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "study_id": "6b1f0c...",
                    "doctor_id": "9a7e2d...",
                    "question": "Should I worry about the highlighted area?",
                }
            ]
        }
    )

    study_id: str = Field(max_length=64)
    doctor_id: str = Field(max_length=64)
    question: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)
    ]


class ReplyRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"answer": "The flagged area needs a follow-up X-ray in 6 weeks."}]
        }
    )

    answer: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=8000)]


class RatingRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"rating": 5}]})

    rating: int = Field(ge=1, le=5)


class PersonRef(BaseModel):
    id: str
    full_name: str
    specialty: Specialty | None = None


class ConsultationPublic(BaseModel):
    id: str
    study_id: str
    study_kind: StudyKind
    patient: PersonRef
    doctor: PersonRef
    question: str
    answer: str | None = None
    status: ConsultationStatus
    rating: int | None = None
    created_at: datetime
    updated_at: datetime
    answered_at: datetime | None = None
    study_access: StudyAccess = Field(
        default="shared",
        description="Whether the doctor can open the study: `shared`; `revoked` by the "
        "patient; `deleted` by the patient (this record, question and answer remain); "
        "`suspended` while the doctor's account is not verified.",
    )
    study_deleted_at: datetime | None = None
    access_revoked_at: datetime | None = None


class ConsultationList(BaseModel):
    items: list[ConsultationPublic]


# ----------------------------------------------------------------------------- model figures
# The test figures a doctor reads beside each model: a screen's rates and AUC, the lung
# segmentation's overlap, the orientation model's accuracy and mirror rates.
FigureMetric = Literal[
    "sensitivity",
    "specificity",
    "auc",
    "dice",
    "iou",
    "accuracy_8way",
    "mirror_detected",
    "mirror_false_flag",
    "accuracy",
    "quadratic_kappa",
]


class Figure(BaseModel):
    """One measured figure of a model card, with its 95% confidence interval when measured."""

    metric: FigureMetric
    value: float
    ci95: tuple[float, float] | None = None
    label: str = Field(
        default="", description="For multi-class models, the class it is about (malignant)."
    )
    split: str = Field(default="test", description="The data the figure was measured on.")


class ModelFigures(BaseModel):
    """What a doctor needs to weigh a model's label: its measured test figures."""

    name: str
    version: str = Field(description="The version that produced the study's result.")
    card_version: str | None = Field(
        default=None, description="The version whose card the service serves now."
    )
    figures: list[Figure] = Field(
        default_factory=list, description="Empty when the card served is another version."
    )
    intended_use: str | None = None


class StudyModels(BaseModel):
    items: list[ModelFigures]
