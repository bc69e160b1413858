"""DICOMweb STOW-RS: ``POST /v1/dicomweb/studies`` stores DICOM instances sent as
``multipart/related; type="application/dicom"`` (the DICOM node sends each C-STORE this way).

Only the configured integration account (``dicom_account``, with a ``studies`` API key) may
send. The body is read by the shared upload reader (bounded, in memory). The answer is the
PS3.18 Store Instances Response in DICOM JSON: 200 when every instance was stored (or was
already), 202 when some were refused, 409 when none was; each refused instance is listed with
its failure reason. When none was, 409 is the error envelope (``conflict``) with the same
FailedSOPSequence in its details.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from python_multipart.multipart import parse_options_header

from gateway.deps import StateDep, StudiesPrincipal
from gateway.dicom_intake import (
    OUT_OF_RESOURCES,
    SOP_CLASS_NOT_SUPPORTED,
    Outcome,
    receive,
)
from gateway.integration import integration_account
from gateway.settings import Settings
from shared.bodylimit import LimitFor
from shared.errors import (
    Conflict,
    Forbidden,
    IRMIError,
    Overloaded,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedFormat,
    error_responses,
)
from shared.uploads import UploadErrors, UploadLimits

router = APIRouter(prefix="/v1/dicomweb", tags=["dicomweb"])
STOW_PATH = "/v1/dicomweb/studies"
DICOM_JSON = "application/dicom+json"


def _not_related(ctype: str) -> IRMIError:
    return UnsupportedFormat(
        'Send the instances as multipart/related; type="application/dicom".',
        details={"content_type": ctype[:100]},
    )


STOW_ERRORS = UploadErrors(not_multipart=_not_related)


def with_stow_limit(limits: LimitFor, settings: Settings) -> LimitFor:
    """``limits``, with STOW-RS requests allowed ``dicom_max_instances`` full-size instances
    (plus 1 MiB of multipart overhead)."""
    stow = settings.max_upload_bytes * settings.dicom_max_instances + 1024 * 1024

    def limit_for(scope: Any) -> int | None:
        if scope.get("method") == "POST" and scope.get("path") == STOW_PATH:
            return stow
        return limits(scope)

    return limit_for


def _uid(tag: str, value: str) -> dict[str, Any]:
    return {tag: {"vr": "UI", "Value": [value]}} if value else {}


def store_response(outcomes: list[Outcome]) -> dict[str, Any]:
    """The PS3.18 Store Instances Response (DICOM JSON) of ``outcomes``."""
    stored = [
        {**_uid("00081150", o.sop_class_uid), **_uid("00081155", o.sop_instance_uid)}
        for o in outcomes
        if o.ok
    ]
    failed = [
        {
            **_uid("00081150", o.sop_class_uid),
            **_uid("00081155", o.sop_instance_uid),
            "00081197": {"vr": "US", "Value": [o.failure]},
        }
        for o in outcomes
        if not o.ok
    ]
    body: dict[str, Any] = {}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    return body


_STOW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "DICOM Part 10 instances, one per part.",
        "content": {
            'multipart/related; type="application/dicom"': {
                "schema": {"type": "string", "format": "binary"}
            }
        },
    }
}


class DicomSequence(BaseModel):
    """A DICOM JSON sequence attribute (PS3.18 F.2)."""

    vr: str = "SQ"
    Value: list[dict[str, Any]] = Field(default_factory=list)


class StoreInstancesResponse(BaseModel):
    """PS3.18 Store Instances Response in DICOM JSON (tags as keys)."""

    model_config = ConfigDict(populate_by_name=True)

    referenced: DicomSequence | None = Field(
        default=None,
        alias="00081199",
        description="ReferencedSOPSequence: the stored instances (SOP Class/Instance UIDs).",
    )
    failed: DicomSequence | None = Field(
        default=None,
        alias="00081198",
        description="FailedSOPSequence: the refused instances, each with its FailureReason "
        "(00081197): 0xC000 cannot understand, 0x0122 SOP class not supported (no pixel "
        "data), 0xA700 out of resources (too large), 0x0110 processing failure.",
    )


_DICOM_JSON = {DICOM_JSON: {"schema": {"$ref": "#/components/schemas/StoreInstancesResponse"}}}


@router.post(
    "/studies",
    operation_id="storeDicomInstances",
    summary="STOW-RS: store DICOM instances (integration account only)",
    description="Instances of one study are analysed together once no new instance of it "
    "has arrived for `dicom_quiet_s` seconds; the results go back to the PACS as a DICOM SR "
    "and a Secondary Capture with the overlay.",
    response_class=Response,
    responses={
        200: {
            "model": StoreInstancesResponse,
            "description": "Every instance is stored (or already was).",
            "content": _DICOM_JSON,
        },
        202: {
            "model": StoreInstancesResponse,
            "description": "Some instances were refused (listed with their reason).",
            "content": _DICOM_JSON,
        },
        **error_responses(
            Unauthorized, Forbidden, Conflict, UnsupportedFormat, PayloadTooLarge, Overloaded
        ),
    },
    openapi_extra=_STOW_BODY,
)
async def store_instances(
    request: Request,
    principal: StudiesPrincipal,
    state: StateDep,
    calling_ae: Annotated[
        str | None,
        Header(
            alias="X-DICOM-Calling-AE",
            description="The AE title the DICOM node received the instances from (recorded).",
        ),
    ] = None,
) -> Response:
    account = integration_account(state.settings, principal)
    _, params = parse_options_header(request.headers.get("content-type", ""))
    part_type = params.get(b"type", b"application/dicom").decode("latin-1").lower()
    if part_type != "application/dicom":
        raise _not_related(request.headers.get("content-type", ""))
    settings = state.settings
    limits = UploadLimits(
        max_file_bytes=settings.max_upload_bytes,
        max_files=settings.dicom_max_instances,
        oversize="mark",
    )
    source = (calling_ae or "stow-rs").strip()[:64] or "stow-rs"
    outcomes: list[Outcome] = []
    async with request.app.state.ctx.uploads.related(request, limits, STOW_ERRORS) as upload:
        for part in upload.files():
            media, _ = parse_options_header(part.content_type or "application/dicom")
            if part.oversize:
                outcomes.append(Outcome("", "", OUT_OF_RESOURCES, "instance too large"))
            elif media != b"application/dicom":
                outcomes.append(Outcome("", "", SOP_CLASS_NOT_SUPPORTED, "not application/dicom"))
            else:
                outcomes.append(await receive(state, account, source, part.data))
    body = store_response(outcomes)
    if not any(o.ok for o in outcomes):
        raise Conflict(
            "No instance was stored: each is listed with its DICOM failure reason.",
            details=body or {"reason": "no_instances"},
        )
    status = 200 if all(o.ok for o in outcomes) else 202
    return Response(json.dumps(body), status_code=status, media_type=DICOM_JSON)
