"""Reading the views of a request (shared.uploads: in memory, bounded), tags, decoding off the
loop.

One scheme, documented in the OpenAPI: a view is a FILE field named by its tag (``L-CC``,
``R-CC``, ``L-MLO``, ``R-MLO``) or a file in the repeatable field ``files`` (untagged: the
pipeline detects laterality and view). The upload order gives the view ids ``view-0``,
``view-1``, ... . Any other field name, a tag given twice, a tag sent as text, no view or more
than ``max_views`` views → 422 ``invalid_view``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast, get_args

from fastapi import Request

from bc_service.settings import Settings
from shared.concurrency import CpuPool
from shared.contracts.mammo import ViewTag
from shared.errors import BadRequest, InvalidView, IRMIError, NotAMammogram
from shared.imaging import DecodedImage, decode_image
from shared.uploads import FilePart, UploadErrors, UploadLimits, UploadReader

TAGS: tuple[str, ...] = get_args(ViewTag)
UNTAGGED_FIELD = "files"


@dataclass
class RawView:
    view_id: str
    field: str
    tag: ViewTag | None
    data: bytes


@dataclass
class DecodedView:
    view_id: str
    tag: ViewTag | None
    image: DecodedImage
    decode_ms: float


def multipart_schema(max_views: int) -> dict[str, Any]:
    """The requestBody of POST /v1/exams for the OpenAPI document."""
    props: dict[str, Any] = {
        tag: {"type": "string", "format": "binary", "description": f"The {tag} view."}
        for tag in TAGS
    }
    props[UNTAGGED_FIELD] = {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "description": "Untagged views (repeat the field): laterality and view are detected.",
    }
    return {
        "requestBody": {
            "required": True,
            "description": (
                f"1 to {max_views} views in total: files in fields named by tag and/or in the "
                "repeated field `files`. PNG (8/16-bit), JPEG or DICOM."
            ),
            "content": {"multipart/form-data": {"schema": {"type": "object", "properties": props}}},
        }
    }


def _too_many_views(_count: int, limit: int) -> IRMIError:
    return InvalidView(f"At most {limit} views are accepted.", details={"max_views": limit})


def _not_multipart(ctype: str) -> IRMIError:
    return BadRequest(
        "Send the views as multipart/form-data.", details={"content_type": ctype[:100]}
    )


UPLOAD_ERRORS = UploadErrors(not_multipart=_not_multipart, too_many_files=_too_many_views)


def body_limits(settings: Settings) -> dict[str, int]:
    """Whole-body limits per route, enforced while the body streams in (shared.bodylimit)."""
    return {
        "/v1/exams": settings.max_request_bytes,
        "/v1/predict": settings.max_upload_bytes + 1024 * 1024,  # one view + multipart overhead
    }


def _limits(settings: Settings) -> UploadLimits:
    return UploadLimits(
        max_file_bytes=settings.max_upload_bytes,
        max_files=settings.max_views,
        max_fields=16,
        max_field_bytes=64 * 1024,
    )


@asynccontextmanager
async def exam_views(
    request: Request, settings: Settings, uploads: UploadReader
) -> AsyncIterator[list[RawView]]:
    """The views of POST /v1/exams, in memory (and in the upload budget) for the block."""
    async with uploads.multipart(request, _limits(settings), UPLOAD_ERRORS) as upload:
        yield _exam_views(upload.items, settings)


def _exam_views(items: list[tuple[str, FilePart | str]], settings: Settings) -> list[RawView]:
    seen: set[str] = set()
    views: list[RawView] = []
    allowed = [*TAGS, UNTAGGED_FIELD]
    for field, value in items:
        if field not in allowed:
            raise InvalidView(
                f"Unknown field {field[:40]!r}: name each view by its tag or send it in "
                f"`{UNTAGGED_FIELD}`.",
                details={"field": field[:40], "allowed": allowed},
            )
        if not isinstance(value, FilePart):
            raise InvalidView(f"Field {field!r} must be a file upload.", details={"field": field})
        tag = None if field == UNTAGGED_FIELD else cast(ViewTag, field)
        if tag is not None:
            if tag in seen:
                raise InvalidView(
                    f"The tag {tag} is given more than once.", details={"duplicate": tag}
                )
            seen.add(tag)
        if len(views) >= settings.max_views:
            raise InvalidView(
                f"At most {settings.max_views} views are accepted.",
                details={"max_views": settings.max_views},
            )
        views.append(RawView(f"view-{len(views)}", field, tag, value.data))
    if not views:
        raise InvalidView(
            "Send at least one view: a file field named by its tag or in `files`.",
            details={"allowed": allowed},
        )
    return views


@asynccontextmanager
async def single_view(
    request: Request, settings: Settings, uploads: UploadReader
) -> AsyncIterator[RawView]:
    """``file`` plus an optional text field ``view`` holding the tag (POST /v1/predict)."""
    async with uploads.multipart(request, _limits(settings), UPLOAD_ERRORS) as upload:
        yield _single_view(upload.items)


def _single_view(items: list[tuple[str, FilePart | str]]) -> RawView:
    upload: FilePart | None = None
    tag: ViewTag | None = None
    for field, value in items:
        if field == "file" and isinstance(value, FilePart):
            if upload is not None:
                raise InvalidView("Send exactly one file in `file`.")
            upload = value
        elif field == "view" and isinstance(value, str):
            text = value.strip()
            if text and text not in TAGS:
                raise InvalidView(
                    f"Unknown view tag {text[:20]!r}.", details={"allowed": list(TAGS)}
                )
            tag = cast(ViewTag, text) if text else None
        else:
            raise InvalidView(
                f"Unexpected field {field[:40]!r}: send `file` and optionally `view`.",
                details={"field": field[:40]},
            )
    if upload is None:
        raise InvalidView("Send the image in the file field `file`.")
    return RawView("view-0", "file", tag, upload.data)


def _decode_one(raw: RawView, settings: Settings) -> DecodedView:
    t0 = time.perf_counter()
    image = decode_image(raw.data, settings.limits())
    check_modality(image)
    return DecodedView(raw.view_id, raw.tag, image, (time.perf_counter() - t0) * 1000.0)


def check_modality(image: DecodedImage) -> None:
    """A DICOM of another modality (CT, MR, chest DX, ...) is refused before any work."""
    if image.format != "dicom":
        return
    modality = image.meta.get("Modality", "").upper()
    if modality and modality != "MG":  # the same rule as the pipeline's decode stage
        raise NotAMammogram(
            f"This DICOM's Modality is {modality}; only MG (mammography) is accepted.",
            details={"reason": "dicom_modality", "modality": modality},
        )


async def decode_views(raws: list[RawView], settings: Settings, cpu: CpuPool) -> list[DecodedView]:
    """Decode every view in the CPU pool; the first bad file fails the request (4xx)."""
    out: list[DecodedView] = []
    for raw in raws:
        try:
            out.append(await cpu.run(_decode_one, raw, settings))
        except IRMIError as exc:
            exc.details.setdefault("view", raw.view_id)
            exc.details.setdefault("field", raw.field)
            raise
    return out
