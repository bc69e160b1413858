"""What the gateway's route modules declare alike: the error lists of a read, a listing and a
change of one resource, the paging offset, and where a resuming event stream starts."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Query

from shared.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
    error_responses,
)

READ_ERRORS = error_responses(Unauthorized, Forbidden, NotFound)
LIST_ERRORS = error_responses(Unauthorized, Forbidden, ValidationFailed)
CHANGE_ERRORS = error_responses(Unauthorized, Forbidden, NotFound, Conflict, ValidationFailed)

Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID")]


def resume_from(last_event_id: str | None, default: int = 0) -> int:
    """The event id a reconnecting stream resumes after: its ``Last-Event-ID`` when that is an
    integer, else ``default``."""
    if last_event_id and last_event_id.strip().isdigit():
        return int(last_event_id.strip())
    return default
