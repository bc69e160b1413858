"""The one clock: timezone-aware UTC now, and its second-resolution text form."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def timestamp(at: datetime | None = None) -> str:
    """``2026-01-31T12:00:00Z``: as model cards record ``created``."""
    return (at or now()).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
