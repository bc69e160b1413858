"""The upload steps the studies and predict routes share: their errors, the form fields of a
chest X-ray and of mammogram views, a chest X-ray read and predicted by tb_service, and
mammogram views read and submitted to bc_service as an exam stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, File, UploadFile

from gateway.state import GatewayState
from gateway.studies import mammogram_views
from gateway.study_writes import Image, read_image, read_views
from shared.contracts.chest import ChestPrediction
from shared.errors import (
    Forbidden,
    ImageTooLarge,
    InvalidImage,
    PayloadTooLarge,
    ProcessingFailed,
    Unauthorized,
    UnsupportedFormat,
)

# The errors of any image upload route (``error_responses(*UPLOAD_ERRORS, ...)``).
UPLOAD_ERRORS = (
    Unauthorized,
    Forbidden,
    PayloadTooLarge,
    UnsupportedFormat,
    ImageTooLarge,
    InvalidImage,
)

ChestFile = Annotated[UploadFile, File(description="PNG, JPEG or DICOM chest X-ray.")]


@dataclass
class MammogramParts:
    """The mammogram parts of a request as sent: by tag, and untagged."""

    tagged: list[tuple[str, UploadFile | None]]
    untagged: list[UploadFile] | None


async def mammogram_parts(
    l_cc: Annotated[UploadFile | None, File(alias="L-CC")] = None,
    r_cc: Annotated[UploadFile | None, File(alias="R-CC")] = None,
    l_mlo: Annotated[UploadFile | None, File(alias="L-MLO")] = None,
    r_mlo: Annotated[UploadFile | None, File(alias="R-MLO")] = None,
    files: Annotated[list[UploadFile] | None, File(description="Untagged views.")] = None,
) -> MammogramParts:
    tagged = [("L-CC", l_cc), ("R-CC", r_cc), ("L-MLO", l_mlo), ("R-MLO", r_mlo)]
    return MammogramParts(tagged, files)


MammogramUpload = Annotated[MammogramParts, Depends(mammogram_parts)]


async def predict_chest_upload(
    state: GatewayState, file: UploadFile
) -> tuple[Image, bytes, ChestPrediction]:
    """Read one chest X-ray and have tb_service predict it: the image, the prediction's raw
    JSON and the prediction (a reply that breaks the contract is a 500 processing_failed)."""
    image = await read_image(file, state.settings.max_upload_bytes, name="image")
    body = await state.upstreams.predict_chest("image", image.forward, image.media_type)
    try:
        prediction = ChestPrediction.model_validate_json(body)
    except ValueError as exc:
        raise ProcessingFailed("tb_service returned a malformed prediction.") from exc
    return image, body, prediction


async def open_exam(
    state: GatewayState, parts: MammogramParts
) -> tuple[list[Image], httpx.Response]:
    """Read the views and submit them to bc_service in stream mode; the caller owns (and must
    close) the response."""
    views = mammogram_views(parts.tagged, parts.untagged, state.settings.max_views)
    images = await read_views(views, state.settings.max_upload_bytes)
    return images, await state.upstreams.open_exam_stream([img.part() for img in images])
