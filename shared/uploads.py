"""Reading multipart uploads into memory, bounded, for every service that takes files.

:meth:`UploadReader.multipart` streams the request body through python-multipart and keeps the
file parts as bytes in memory: nothing is spooled to a temporary file (Starlette's own form
parser writes every file over 1 MB to disk). Limits apply while the body streams in: the
content type is checked before a byte is read, and the number of files and fields, the size of
each text field and of each file are checked as the parts arrive, so an oversized file is
refused (or marked and skipped) without reading it whole. The whole-body limit is
:mod:`shared.bodylimit`'s middleware.

One :class:`InFlightBudget` per process caps the upload bytes held in memory by all requests
together: a request whose declared ``Content-Length`` does not fit, or whose streamed parts push
the total over it, is answered 503 ``overloaded`` with Retry-After. The bytes stay reserved
until the ``async with`` block that uses them ends (decode, inference), then are given back.

Each service keeps its own documented error codes through :class:`UploadErrors`.

:meth:`UploadReader.related` reads a ``multipart/related`` body (DICOMweb STOW-RS) the same
way: every part is a file (no ``Content-Disposition`` needed), its field the part's
``Content-ID`` (or ``""``), under the same limits and budget.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from shared.errors import BadRequest, IRMIError, Overloaded, PayloadTooLarge
from shared.metrics import ServiceMetrics

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks


def _not_multipart(content_type: str) -> IRMIError:
    return BadRequest(
        "Send the request as multipart/form-data.", details={"content_type": content_type[:100]}
    )


def _too_many_files(count: int, limit: int) -> IRMIError:
    return PayloadTooLarge(
        f"At most {limit} files are accepted.", details={"files": count, "max_files": limit}
    )


def _file_too_large(field: str, limit: int) -> IRMIError:
    return PayloadTooLarge(
        f"The file in field {field[:40]!r} is larger than {limit} bytes.",
        details={"field": field[:40], "max_bytes": limit},
    )


@dataclass(frozen=True)
class UploadErrors:
    """The refusals a service answers with (defaults: 400 ``bad_request``, 413
    ``payload_too_large``); malformed multipart is always 400 ``bad_request``."""

    not_multipart: Callable[[str], IRMIError] = _not_multipart
    too_many_files: Callable[[int, int], IRMIError] = _too_many_files
    file_too_large: Callable[[str, int], IRMIError] = _file_too_large


@dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int
    max_files: int
    max_fields: int = 16
    max_field_bytes: int = 64 * 1024
    #: "refuse": a file over ``max_file_bytes`` fails the request at once; "mark": its part is
    #: kept with ``oversize=True`` and no data (the rest of it is read and dropped), so the
    #: caller decides (e.g. one error item in a batch).
    oversize: Literal["refuse", "mark"] = "refuse"


@dataclass
class FilePart:
    field: str
    filename: str | None
    content_type: str | None
    data: bytes
    oversize: bool = False


@dataclass
class Upload:
    """The parts of a multipart body in request order: files and text fields."""

    items: list[tuple[str, FilePart | str]] = field(default_factory=list)

    def files(self, name: str | None = None) -> list[FilePart]:
        return [v for k, v in self.items if isinstance(v, FilePart) and name in (None, k)]


class InFlightBudget:
    """Upload bytes held in memory by the whole process; used from the event loop only."""

    def __init__(
        self, max_bytes: int, retry_after_s: int = 1, metrics: ServiceMetrics | None = None
    ) -> None:
        self.max_bytes = max_bytes
        self.retry_after_s = retry_after_s
        self.held = 0
        self._gauge = metrics.upload_in_flight.labels(metrics.service) if metrics else None

    def take(self, n: int) -> None:
        if self.held + n > self.max_bytes:
            raise Overloaded(
                "Too many upload bytes in flight; retry shortly.",
                retry_after=self.retry_after_s,
                details={"reason": "upload_bytes_in_flight"},
            )
        self.held += n
        self._report()

    def give(self, n: int) -> None:
        self.held = max(0, self.held - n)
        self._report()

    def _report(self) -> None:
        if self._gauge is not None:
            self._gauge.set(self.held)


class UploadReader:
    """One per process (``ServiceContext.uploads``), sharing one :class:`InFlightBudget`."""

    def __init__(self, budget: InFlightBudget, metrics: ServiceMetrics | None = None) -> None:
        self.budget = budget
        self._read = metrics.upload_bytes.labels(metrics.service) if metrics else None

    def multipart(
        self, request: Request, limits: UploadLimits, errors: UploadErrors | None = None
    ) -> AbstractAsyncContextManager[Upload]:
        """The body's parts, held in memory (and in the budget) until the block ends."""
        return self._read_body(request, limits, errors or UploadErrors(), related=False)

    def related(
        self, request: Request, limits: UploadLimits, errors: UploadErrors | None = None
    ) -> AbstractAsyncContextManager[Upload]:
        """A ``multipart/related`` body's parts (all files), held like :meth:`multipart`'s;
        ``errors.not_multipart`` refuses any other content type."""
        return self._read_body(request, limits, errors or UploadErrors(), related=True)

    @asynccontextmanager
    async def _read_body(
        self, request: Request, limits: UploadLimits, errors: UploadErrors, related: bool
    ) -> AsyncIterator[Upload]:
        ctype = request.headers.get("content-type", "")
        media, params = parse_options_header(ctype)
        boundary = params.get(b"boundary")
        wanted = b"multipart/related" if related else b"multipart/form-data"
        if media != wanted or not boundary:
            raise errors.not_multipart(ctype)
        collector = _Collector(limits, errors, self.budget, related=related)
        try:
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit():
                collector.reserve(int(declared))  # 503 before a byte is read
            parser = MultipartParser(boundary, collector.callbacks())
            try:
                async for chunk in request.stream():
                    if self._read is not None:
                        self._read.inc(len(chunk))
                    parser.write(chunk)
                parser.finalize()
            except FormParserError:
                raise BadRequest("The multipart body is malformed.") from None
            except ClientDisconnect:
                raise BadRequest("The client went away before the body was complete.") from None
            if not collector.ended:
                raise BadRequest("The multipart body ended before its closing boundary.")
            yield Upload(collector.items)
        finally:
            collector.release()


class _Collector:
    """python-multipart callbacks that build the parts in memory under the limits."""

    def __init__(
        self,
        limits: UploadLimits,
        errors: UploadErrors,
        budget: InFlightBudget,
        related: bool = False,
    ) -> None:
        self.limits, self.errors, self.budget = limits, errors, budget
        self.related = related
        self.items: list[tuple[str, FilePart | str]] = []
        self.ended = False
        self.held = 0  # bytes of the budget this request holds
        self.kept = 0  # bytes of parts kept in memory
        self.files = self.fields = 0
        self._header_name = self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._file: FilePart | None = None
        self._data = bytearray()
        self._skip = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field_part,
            "on_header_value": self._header_value_part,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def reserve(self, n: int) -> None:
        if n > self.held:
            self.budget.take(n - self.held)
            self.held = n

    def release(self) -> None:
        self.budget.give(self.held)
        self.held = 0
        self.items = []

    def _begin(self) -> None:
        self._headers, self._file, self._data, self._skip = {}, None, bytearray(), False

    def _header_field_part(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        if self.related:
            self._related_part()
            return
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        if b"name" not in options:
            raise BadRequest('Every multipart part needs a Content-Disposition "name".')
        self._name = options[b"name"].decode("utf-8", "replace")
        if b"filename" not in options:
            self.fields += 1
            if self.fields > self.limits.max_fields:
                raise BadRequest(f"At most {self.limits.max_fields} text fields are accepted.")
            return
        self.files += 1
        if self.files > self.limits.max_files:
            raise self.errors.too_many_files(self.files, self.limits.max_files)
        ctype = self._headers.get(b"content-type")
        self._file = FilePart(
            field=self._name,
            filename=options[b"filename"].decode("utf-8", "replace"),
            content_type=ctype.decode("latin-1") if ctype is not None else None,
            data=b"",
        )

    def _related_part(self) -> None:
        """A part of a multipart/related body: a file, named by its Content-ID."""
        self._name = self._headers.get(b"content-id", b"").decode("latin-1").strip("<> ")
        self.files += 1
        if self.files > self.limits.max_files:
            raise self.errors.too_many_files(self.files, self.limits.max_files)
        ctype = self._headers.get(b"content-type")
        self._file = FilePart(
            field=self._name,
            filename=None,
            content_type=ctype.decode("latin-1") if ctype is not None else None,
            data=b"",
        )

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._skip:
            return
        n = end - start
        size = len(self._data) + n
        if self._file is None and size > self.limits.max_field_bytes:
            raise BadRequest(
                f"The text field {self._name[:40]!r} exceeds {self.limits.max_field_bytes} bytes."
            )
        if self._file is not None and size > self.limits.max_file_bytes:
            if self.limits.oversize == "refuse":
                raise self.errors.file_too_large(self._name, self.limits.max_file_bytes)
            self._file.oversize, self._skip = True, True
            self.kept -= len(self._data)
            self._data = bytearray()
            return
        self.kept += n
        self.reserve(self.kept)
        self._data += data[start:end]

    def _part_end(self) -> None:
        if self._file is None:
            self.items.append((self._name, self._data.decode("utf-8", "replace")))
        else:
            self._file.data = bytes(self._data)
            self.items.append((self._name, self._file))
        self._data = bytearray()

    def _end(self) -> None:
        self.ended = True
