"""What the browser shows of a study's images: the display image of an original (DICOM or not,
at a window preset) and its thumbnail, rendered once and stored (:mod:`gateway.display_store`).
The original itself (``GET /v1/studies/{id}/images/{image_id}``) is a download."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from gateway.deps import SessionDep, StateDep, StudiesPrincipal, audit
from gateway.display import PRESETS, Preset
from gateway.display_store import display_png, original_file, thumbnail_jpeg
from gateway.routes.common import READ_ERRORS
from gateway.studies import load_readable
from shared.errors import ImageTooLarge, InvalidImage, error_responses
from shared.openapi import binary_response

router = APIRouter(prefix="/v1/studies", tags=["studies"])

_NO_STORE = {"Cache-Control": "private, no-store"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS,
    **error_responses(InvalidImage, ImageTooLarge),
}

PresetQuery = Annotated[
    Preset,
    Query(
        description="The window: `file` (the file's own VOI LUT or WindowCenter/Width, after "
        "rescale and MONOCHROME1 inversion; the full value range when it has none), `lung` "
        "(the image's 0.5th-65th value percentiles: lung fields in contrast, bone saturated) "
        "or `mammography` (the breast's 1st-99.5th percentiles, background left out). "
        f"One of {', '.join(PRESETS)}.",
    ),
]


@router.get(
    "/{study_id}/images/{image_id}/display",
    operation_id="getStudyImageDisplay",
    tags=["studies"],
    summary="The display image of an original: 8-bit PNG, windowed, long side at most 1024 px",
    description="Rendered from the stored original (DICOM, PNG or JPEG) on first request and "
    "stored beside it. An overlay's `covers` box (pixels of the original) scaled by this "
    "image's width over the original's lies where the overlay belongs.",
    response_class=Response,
    responses={200: binary_response("PNG.", "image/png"), **_ERRORS},
)
async def get_display_image(
    study_id: str,
    image_id: str,
    principal: StudiesPrincipal,
    state: StateDep,
    session: SessionDep,
    preset: PresetQuery = "file",
) -> Response:
    study = await load_readable(session, principal, study_id)
    original = await original_file(session, study.id, image_id)
    data = await display_png(state, session, original, preset)
    audit(session, principal, "read_display", study.id)
    await session.commit()
    return Response(data, media_type="image/png", headers=_NO_STORE)


@router.get(
    "/{study_id}/images/{image_id}/thumbnail",
    operation_id="getStudyImageThumbnail",
    tags=["studies"],
    summary="A small JPEG of an original (long side 160 px), for history lists",
    response_class=Response,
    responses={200: binary_response("JPEG.", "image/jpeg"), **_ERRORS},
)
async def get_thumbnail(
    study_id: str, image_id: str, principal: StudiesPrincipal, state: StateDep, session: SessionDep
) -> Response:
    study = await load_readable(session, principal, study_id)
    original = await original_file(session, study.id, image_id)
    data = await thumbnail_jpeg(state, session, original)
    audit(session, principal, "read_thumbnail", study.id)
    await session.commit()
    return Response(data, media_type="image/jpeg", headers=_NO_STORE)
