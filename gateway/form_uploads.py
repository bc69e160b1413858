"""The upload routes' multipart forms, read by :class:`shared.uploads.UploadReader` as every
service reads its own: in memory, bounded while the body streams in, and under the process's
in-flight budget (``max_upload_bytes_in_flight``: 503 ``overloaded`` with Retry-After).

FastAPI would hand the form to Starlette's parser, which writes every file over 1 MiB to a
temporary file, in the clear: a patient's DICOM, with its name in the header, on the disk
before the gateway de-identifies and encrypts it. :class:`InMemoryFormRoute` parses the body
first and gives FastAPI the parts as in-memory ``UploadFile``s, so the routes keep declaring
(and documenting) their ``File`` parameters as before. The parts stay in the budget until the
route has answered.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import params
from fastapi.routing import APIRoute
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from gateway.settings import Settings
from shared.uploads import FilePart, Upload, UploadLimits

# Files one upload request may carry at most: room for every view in a tagged field and in
# ``files`` (the routes answer 422 on too many views); past it, 413 before reading on.
FILES_PER_VIEW = 2


class _ParsedFormRequest(Request):
    """A request whose form was read already (the body is consumed)."""

    def __init__(self, scope: Scope, receive: Receive, form: FormData) -> None:
        super().__init__(scope, receive)
        self._parsed = form

    async def _parsed_form(self) -> FormData:
        return self._parsed

    def form(self, **_: Any) -> Any:  # FastAPI awaits it
        return self._parsed_form()


class InMemoryUploadFile(UploadFile):
    """An UploadFile over bytes already in memory. Starlette tells memory from disk by a
    SpooledTemporaryFile's ``_rolled`` flag, which a BytesIO lacks, so it would read and close
    every part through a worker thread (two thread hops a request) for no I/O at all."""

    @property
    def _in_memory(self) -> bool:
        return True


def _upload_file(part: FilePart) -> UploadFile:
    headers = Headers({"content-type": part.content_type} if part.content_type else {})
    return InMemoryUploadFile(
        io.BytesIO(part.data), size=len(part.data), filename=part.filename, headers=headers
    )


def _form(upload: Upload) -> FormData:
    return FormData(
        [(k, _upload_file(v) if isinstance(v, FilePart) else v) for k, v in upload.items]
    )


def _is_multipart_form(request: Request) -> bool:
    media, _ = parse_options_header(request.headers.get("content-type", ""))
    return bool(media == b"multipart/form-data")


class InMemoryFormRoute(APIRoute):
    """An APIRoute whose form body is read in memory by the process's UploadReader (see
    module); routes without a form body are served as by APIRoute."""

    def upload_limits(self, settings: Settings) -> UploadLimits:
        """The image upload routes': each file up to ``max_upload_bytes``."""
        return UploadLimits(
            max_file_bytes=settings.max_upload_bytes, max_files=FILES_PER_VIEW * settings.max_views
        )

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        body = self.body_field
        if body is None or not isinstance(body.field_info, params.Form):
            return handler

        async def read_in_memory(request: Request) -> Response:
            if not _is_multipart_form(request):
                return await handler(request)  # FastAPI's own refusal of a non-form body
            limits = self.upload_limits(request.app.state.gw.settings)
            async with request.app.state.ctx.uploads.multipart(request, limits) as upload:
                return await handler(
                    _ParsedFormRequest(request.scope, request.receive, _form(upload))
                )

        return read_in_memory


class ValidationFormRoute(InMemoryFormRoute):
    """The validation uploads': a zip or labelled files, each part up to the request bound."""

    def upload_limits(self, settings: Settings) -> UploadLimits:
        return UploadLimits(
            max_file_bytes=settings.max_request_bytes,
            max_files=settings.validation_max_zip_entries + 2,  # the files, the CSV, a zip
        )
