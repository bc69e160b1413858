"""shared.uploads: multipart/related bodies (DICOMweb STOW-RS) through the same reader."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI, Request

from shared.errors import install_error_handlers
from shared.uploads import InFlightBudget, UploadLimits, UploadReader

B = "rel"
RELATED = {"content-type": f'multipart/related; type="application/dicom"; boundary={B}'}


def part(data: bytes, cid: str | None = None, ctype: str = "application/dicom") -> bytes:
    head = f"--{B}\r\nContent-Type: {ctype}\r\n" + (f"Content-ID: <{cid}>\r\n" if cid else "")
    return head.encode() + b"\r\n" + data + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{B}--\r\n".encode()


def client(limits: UploadLimits) -> tuple[httpx.AsyncClient, InFlightBudget]:
    budget = InFlightBudget(10**9)
    reader = UploadReader(budget)
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/stow")
    async def stow(request: Request) -> list[dict[str, Any]]:
        async with reader.related(request, limits) as upload:
            return [
                {"field": f.field, "type": f.content_type, "n": len(f.data), "over": f.oversize}
                for f in upload.files()
            ]

    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://t"), budget


async def test_every_part_is_a_file_named_by_its_content_id() -> None:
    c, budget = client(UploadLimits(max_file_bytes=100, max_files=4, oversize="mark"))
    r = await c.post(
        "/stow", content=body(part(b"DICM" * 3, "a@x"), part(b"x" * 200)), headers=RELATED
    )
    assert r.status_code == 200, r.text
    assert r.json() == [
        {"field": "a@x", "type": "application/dicom", "n": 12, "over": False},
        {"field": "", "type": "application/dicom", "n": 0, "over": True},
    ]
    assert budget.held == 0  # given back once the block ended


async def test_limits_and_content_type_are_enforced() -> None:
    c, _ = client(UploadLimits(max_file_bytes=100, max_files=1))
    r = await c.post("/stow", content=body(part(b"1"), part(b"2")), headers=RELATED)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    form = {"content-type": f"multipart/form-data; boundary={B}"}
    r = await c.post("/stow", content=body(part(b"1")), headers=form)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    r = await c.post("/stow", content=part(b"1"), headers=RELATED)  # no closing boundary
    assert r.status_code == 400
