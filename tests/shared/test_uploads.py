"""shared.uploads: multipart parts in memory, limits while streaming, the in-flight budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, Request

from shared.errors import ValidationFailed, install_error_handlers
from shared.metrics import ServiceMetrics
from shared.uploads import FilePart, InFlightBudget, UploadErrors, UploadLimits, UploadReader

B = "bnd"
MULTIPART = {"content-type": f"multipart/form-data; boundary={B}"}


def part(name: str, data: bytes, filename: str | None = None, ctype: str | None = None) -> bytes:
    disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{B}\r\nContent-Disposition: {disp}\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    return head.encode() + b"\r\n" + data + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{B}--\r\n".encode()


class Harness:
    """An app whose one route reads its body with the reader and describes what it got."""

    def __init__(self, limits: UploadLimits, budget: int = 10**9, **errors: Any) -> None:
        self.metrics = ServiceMetrics("test")
        self.budget = InFlightBudget(budget, retry_after_s=3, metrics=self.metrics)
        self.reader = UploadReader(self.budget, self.metrics)
        self.held_inside: list[int] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        app = FastAPI()
        install_error_handlers(app)

        @app.post("/up")
        async def up(request: Request) -> list[dict[str, Any]]:
            async with self.reader.multipart(request, limits, UploadErrors(**errors)) as upload:
                self.held_inside.append(self.budget.held)
                self.entered.set()
                if self.gate is not None:
                    await self.gate.wait()
                return [_describe(k, v) for k, v in upload.items]

        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

    def sample(self, name: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, {"service": "test"})


def _describe(name: str, value: FilePart | str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"field": name, "text": value}
    return {
        "field": name,
        "filename": value.filename,
        "type": value.content_type,
        "n": len(value.data),
        "head": value.data[:4].decode("latin-1"),
        "oversize": value.oversize,
    }


LIMITS = UploadLimits(max_file_bytes=1000, max_files=3, max_fields=2, max_field_bytes=10)


async def test_parts_in_request_order_as_bytes() -> None:
    h = Harness(LIMITS)
    data = body(
        part("a", b"PNG!" + b"\x00" * 996, "a.png", "image/png"),
        part("view", b"L-CC"),
        part("b", b"\r\n--xx", "b.bin"),
    )
    r = await h.client.post("/up", content=data, headers=MULTIPART)
    assert r.status_code == 200, r.text
    assert r.json() == [
        {"field": "a", "filename": "a.png", "type": "image/png", "n": 1000, "head": "PNG!",
         "oversize": False},
        {"field": "view", "text": "L-CC"},
        {"field": "b", "filename": "b.bin", "type": None, "n": 6, "head": "\r\n--",
         "oversize": False},
    ]  # fmt: skip
    # The declared length was held while the route ran, and given back afterwards.
    assert h.held_inside == [len(data)] and h.budget.held == 0
    assert h.sample("irmi_upload_bytes_total") == len(data)


async def test_limits_are_checked_as_parts_arrive() -> None:
    h = Harness(LIMITS)
    cases = [
        (body(part("a", b"x" * 1001, "a.png")), 413, "payload_too_large"),
        (body(*(part(f"f{i}", b"x", f"{i}.png") for i in range(4))), 413, "payload_too_large"),
        (body(part("t", b"x" * 11)), 400, "bad_request"),
        (body(*(part(f"t{i}", b"x") for i in range(3))), 400, "bad_request"),
        (part("a", b"x", "a.png"), 400, "bad_request"),  # no closing boundary
        (b"garbage without any boundary", 400, "bad_request"),
        (f"--{B}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--{B}--\r\n".encode(), 400,
         "bad_request"),  # no name
    ]  # fmt: skip
    for data, status, code in cases:
        r = await h.client.post("/up", content=data, headers=MULTIPART)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), data[:80]
    r = await h.client.post("/up", content=body(part("a", b"x" * 1001, "a.png")), headers=MULTIPART)
    assert r.json()["error"]["details"] == {"field": "a", "max_bytes": 1000}
    assert h.budget.held == 0


async def test_oversize_file_marked_when_asked() -> None:
    h = Harness(UploadLimits(max_file_bytes=100, max_files=3, oversize="mark"))
    data = body(part("f", b"x" * 5000, "big.png"), part("f", b"ok", "small.png"))
    r = await h.client.post("/up", content=data, headers=MULTIPART)
    assert [(p["filename"], p["n"], p["oversize"]) for p in r.json()] == [
        ("big.png", 0, True),
        ("small.png", 2, False),
    ]
    assert h.held_inside == [len(data)]


async def test_a_refused_stream_is_not_read_to_its_end() -> None:
    h = Harness(LIMITS)
    sent = 0

    async def stream(first: bytes) -> AsyncIterator[bytes]:
        nonlocal sent
        yield first
        for _ in range(1000):
            sent += 1
            yield b"x" * 1024

    head = f'--{B}\r\nContent-Disposition: form-data; name="a"; filename="a"\r\n\r\n'.encode()
    r = await h.client.post("/up", content=stream(head), headers=MULTIPART)
    assert r.status_code == 413 and sent <= 2
    # A body that is not multipart is refused before a byte of it is read.
    sent = 0
    r = await h.client.post("/up", content=stream(b""), headers={"content-type": "text/plain"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request" and sent == 0
    assert r.json()["error"]["details"] == {"content_type": "text/plain"}


async def test_service_errors_replace_the_defaults() -> None:
    def not_multipart(ctype: str) -> ValidationFailed:
        return ValidationFailed("multipart please", details={"got": ctype})

    h = Harness(LIMITS, not_multipart=not_multipart)
    r = await h.client.post("/up", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["details"] == {"got": "application/json"}


async def test_budget_refuses_what_does_not_fit_and_gives_back() -> None:
    h = Harness(LIMITS, budget=600)
    h.gate = asyncio.Event()
    one = body(part("a", b"x" * 400, "a.png"))
    first = asyncio.create_task(h.client.post("/up", content=one, headers=MULTIPART))
    await asyncio.wait_for(h.entered.wait(), 30)
    assert h.budget.held == len(one)
    assert h.sample("irmi_upload_bytes_in_flight") == len(one)
    # Declared length that does not fit: 503 with Retry-After, nothing read.
    r = await h.client.post("/up", content=one, headers=MULTIPART)
    assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded"
    assert r.headers["retry-after"] == "3"

    # Chunked: refused once the kept parts pass the budget.
    async def chunks() -> AsyncIterator[bytes]:
        yield one

    r = await h.client.post("/up", content=chunks(), headers=MULTIPART)
    assert r.status_code == 503 and h.budget.held == len(one)
    h.gate.set()
    assert (await first).status_code == 200
    assert h.budget.held == 0 and h.sample("irmi_upload_bytes_in_flight") == 0
    h.gate = None
    assert (await h.client.post("/up", content=chunks(), headers=MULTIPART)).status_code == 200
