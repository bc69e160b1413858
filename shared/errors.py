"""The error envelope every IRMI service speaks, and the exceptions that map onto it.

Every error leaves a service as ``{"error": {"code", "message", "details"}}`` with a fitting
status. Domain code raises an :class:`IRMIError` subclass; :func:`install_error_handlers` is the
one place where exceptions become HTTP responses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from shared.asgi import HttpMiddleware

log = logging.getLogger("irmi.errors")


def _code_enum(schema: dict[str, Any]) -> None:
    schema["enum"] = error_codes()


class ErrorBody(BaseModel):
    # A plain string when parsed (an envelope relayed from another service is passed on as it
    # came); the documents publish the registry (:func:`error_codes`) as its enum.
    code: str = Field(
        examples=["invalid_image"],
        description="Stable snake_case error code (the registry: shared.errors.error_codes).",
        json_schema_extra=_code_enum,
    )
    message: str = Field(description="Human-readable explanation.")
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorEnvelope(BaseModel):
    """Shape of every error response."""

    error: ErrorBody


class IRMIError(Exception):
    """Base of all domain errors. Subclasses fix the code and the HTTP status."""

    code: ClassVar[str] = "processing_failed"
    status_code: ClassVar[int] = 500
    default_message: ClassVar[str] = "Processing failed."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(self.message)

    def envelope(self) -> ErrorEnvelope:
        return ErrorEnvelope(
            error=ErrorBody(code=self.code, message=self.message, details=self.details)
        )


class UnsupportedFormat(IRMIError):
    code = "unsupported_format"
    status_code = 415
    default_message = "Only PNG, JPEG or DICOM images are accepted."


class InvalidImage(IRMIError):
    code = "invalid_image"
    status_code = 422
    default_message = "The file could not be read as an image."


class ImageTooLarge(IRMIError):
    code = "image_too_large"
    status_code = 413
    default_message = "The image is too large."


class PayloadTooLarge(IRMIError):
    code = "payload_too_large"
    status_code = 413
    default_message = "The request body is too large."


class NotAChestXray(IRMIError):
    code = "not_a_chest_xray"
    status_code = 422
    default_message = "This is not a valid chest X-ray."


class UnsupportedView(IRMIError):
    code = "unsupported_view"
    status_code = 422
    default_message = "Only frontal (PA or AP) chest X-rays are screened."


class NotAMammogram(IRMIError):
    code = "not_a_mammogram"
    status_code = 422
    default_message = "This is not a valid mammogram."


class InvalidView(IRMIError):
    code = "invalid_view"
    status_code = 422
    default_message = "Views must be tagged L-CC, R-CC, L-MLO or R-MLO."


class UnsupportedDicom(IRMIError):
    """A DICOM object or study IRMI does not analyse (``details.reason``: ``for_processing``,
    ``tomosynthesis``, ``multiple_images_per_view``, ``modality``, ...)."""

    code = "unsupported_dicom"
    status_code = 422
    default_message = "This DICOM study is not one IRMI analyses."


class BadRequest(IRMIError):
    code = "bad_request"
    status_code = 400
    default_message = "The request is malformed."


class ValidationFailed(IRMIError):
    code = "validation_error"
    status_code = 422
    default_message = "The request did not validate."


class Unauthorized(IRMIError):
    code = "unauthorized"
    status_code = 401
    default_message = "Authentication is required."


class Forbidden(IRMIError):
    code = "forbidden"
    status_code = 403
    default_message = "You may not access this resource."


class NotFound(IRMIError):
    code = "not_found"
    status_code = 404
    default_message = "Not found."


class Conflict(IRMIError):
    code = "conflict"
    status_code = 409
    default_message = "The resource already exists or is in a conflicting state."


class RetryLater(IRMIError):
    """An error that says when to try again: ``Retry-After`` (seconds, at least 1; the class's
    ``default_retry_after`` unless given), also in ``details`` where ``retry_after_in_details``."""

    default_retry_after = 1
    retry_after_in_details = True

    def __init__(
        self, message: str | None = None, *, retry_after: int | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        seconds = max(1, int(self.default_retry_after if retry_after is None else retry_after))
        self.headers["Retry-After"] = str(seconds)
        if self.retry_after_in_details:
            self.details.setdefault("retry_after", seconds)


class RateLimited(RetryLater):
    code = "rate_limited"
    status_code = 429
    default_message = "Too many requests; slow down."


class Overloaded(RetryLater):
    code = "overloaded"
    status_code = 503
    default_message = "The service is at capacity; retry shortly."


class ServiceUnavailable(RetryLater):
    code = "service_unavailable"
    status_code = 503
    default_message = "A required service is unavailable; retry shortly."
    default_retry_after = 5
    retry_after_in_details = False


class ProcessingFailed(IRMIError):
    code = "processing_failed"
    status_code = 500
    default_message = "Processing failed."


_HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_format",
    422: "validation_error",
    429: "rate_limited",
    503: "service_unavailable",
}
_OTHER_HTTP_CODE = "http_error"  # any other 4xx/5xx Starlette raises


def error_codes() -> list[str]:
    """The registry of error codes, sorted: the ``code`` of every :class:`IRMIError` subclass
    and the codes the HTTP handler maps statuses onto (``_HTTP_CODES``, ``http_error``).

    Convention: a new code is a new :class:`IRMIError` subclass in this module (or a new
    ``_HTTP_CODES`` entry), never a bare string: the OpenAPI documents publish this registry
    as the ``enum`` of ``ErrorBody.code`` (tests/shared/test_error_codes.py checks that every
    code the sources emit is in it)."""
    codes = {*_HTTP_CODES.values(), _OTHER_HTTP_CODE}
    pending: list[type[IRMIError]] = [IRMIError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return sorted(codes)


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorEnvelope(error=ErrorBody(code=code, message=message, details=details or {}))
    return JSONResponse(body.model_dump(), status_code=status_code, headers=headers)


def _jsonable_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        # Never echo the submitted input back: it may be image bytes or personal data.
        out.append({"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))})
    return out


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception a route can raise onto the error envelope."""

    async def on_irmi(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, IRMIError)
        if exc.status_code >= 500:
            log.warning("request failed: %s", exc.code)
        return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(
            422,
            "validation_error",
            "The request did not validate.",
            {"errors": _jsonable_errors(exc)},
        )

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, _OTHER_HTTP_CODE)
        message = exc.detail if isinstance(exc.detail, str) else "HTTP error."
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, message, headers=headers)

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Reached only by apps without UnhandledErrorMiddleware (which logs with the request id).
        log.exception("unhandled error: %s", type(exc).__name__)
        return error_response(500, "processing_failed", "Processing failed unexpectedly.")

    _document_unparsable_bodies(app)
    app.add_exception_handler(IRMIError, on_irmi)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def error_responses(*errors: type[IRMIError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the envelope for the given errors."""
    out: dict[int | str, dict[str, Any]] = {}
    for err in errors:
        entry = out.setdefault(
            err.status_code, {"model": ErrorEnvelope, "description": "", "codes": []}
        )
        entry["codes"].append(err.code)
    for entry in out.values():
        entry["description"] = "Error envelope; code one of: " + ", ".join(entry.pop("codes"))
    return out


def amend_openapi(app: FastAPI, amend: Callable[[dict[str, Any]], None]) -> None:
    """Pass the app's OpenAPI document through ``amend`` once, when it is first generated."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = generate()
        amend(doc)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def openapi_operations(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every operation object of an OpenAPI document."""
    for methods in doc.get("paths", {}).values():
        for op in methods.values():
            if isinstance(op, dict):
                yield op


def envelope_entry(description: str) -> dict[str, Any]:
    """An OpenAPI response entry whose body is the error envelope."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
    }


def _document_unparsable_bodies(app: FastAPI) -> None:
    """Every operation with a request body may answer 400 ``bad_request`` (a JSON or multipart
    body that cannot be parsed at all): say so in the OpenAPI document."""

    def amend(doc: dict[str, Any]) -> None:
        if "ErrorEnvelope" in doc.get("components", {}).get("schemas", {}):
            entry = envelope_entry("Error envelope; code one of: bad_request (unparsable body)")
            for op in openapi_operations(doc):
                if "requestBody" in op:
                    op.setdefault("responses", {}).setdefault("400", entry)

    amend_openapi(app, amend)


_UNEXPECTED = ErrorEnvelope(
    error=ErrorBody(code="processing_failed", message="Processing failed unexpectedly.")
)


class UnhandledErrorMiddleware(HttpMiddleware):
    """Turns an exception no handler took into the 500 envelope *inside* the request's
    context, so its one log line carries the request id, the method and the route template.

    Starlette's own last-resort handler runs outside every middleware, after the request id
    is gone, and the server then logs the traceback a second time without it. Install this
    innermost (inside the request-id middleware)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            log.exception(
                "unhandled error: %s",
                type(exc).__name__,
                extra={"method": scope.get("method"), "route": route},
            )
            if started:
                return  # the response is half sent: the connection is closed without more
            body = _UNEXPECTED.model_dump_json().encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
