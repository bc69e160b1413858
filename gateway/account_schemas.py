"""Wire models of the account administration: doctor verification decisions (admins) and
password reset."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.schemas import DoctorStatus, Email, Specialty


# ----------------------------------------------------------------------------- admin
class DecisionRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "Licence GMC-1234567 checked on the register."}]}
    )

    reason: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
        | None
    ) = Field(default=None, description="Why; required to reject or suspend.")


class PersonBrief(BaseModel):
    id: str
    full_name: str


class DecisionPublic(BaseModel):
    """One verification decision about a doctor (an audit row)."""

    at: datetime
    admin: PersonBrief | None = Field(description="Who decided (null if the account is gone).")
    decision: Literal["verify", "reject", "suspend"]
    from_status: DoctorStatus
    to_status: DoctorStatus
    reason: str | None = None


class DoctorAccount(BaseModel):
    """A doctor's account as an admin sees it."""

    id: str
    email: str
    full_name: str
    specialty: Specialty | None = None
    licence_number: str | None = None
    status: DoctorStatus
    created_at: datetime
    last_decision: DecisionPublic | None = None


class DoctorAccountPage(BaseModel):
    items: list[DoctorAccount]
    total: int
    limit: int
    offset: int


class DecisionList(BaseModel):
    items: list[DecisionPublic]


# ----------------------------------------------------------------------------- password reset
class ResetRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"email": "ada@example.org"}]})

    email: Email


class ResetAccepted(BaseModel):
    message: str = Field(description="Always the same, whether or not an account has this address.")


class ResetConfirm(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"token": "Zq3...from-the-link", "password": "new-horse-battery-9"}]
        }
    )

    token: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024, description="Rules: see the 422.")
