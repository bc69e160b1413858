"""Checks of shared.uploads in a real service process (tb_service, bc_service) over HTTP.

The service runs with ``TMPDIR`` pointed at an empty folder of the test's own: an upload
spooled to disk would show up there. What the server read is its ``irmi_upload_bytes_total``
counter; what the client managed to send before the answer comes from :mod:`tests.rawhttp`.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from pathlib import Path

import httpx

from tests.procs import Service
from tests.rawhttp import RawUpload, filler, multipart_head, post_stream

MiB = 1024 * 1024
BOUNDARY = "irmi-test-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
GIF = b"GIF89a\x10\x00\x10\x00\x80\x00\x00"


def metric(svc: Service, name: str) -> float:
    text = httpx.get(svc.url + "/metrics", timeout=30).text
    found = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def server_read(svc: Service) -> float:
    return metric(svc, "irmi_upload_bytes_total")


def tmp_files(tmpdir: Path) -> set[str]:
    return {str(p.relative_to(tmpdir)) for p in tmpdir.rglob("*")}


def open_tmp_files(svc: Service, tmpdir: Path) -> list[str]:
    """Files under ``tmpdir`` the service process holds open. A SpooledTemporaryFile that
    rolled over is an unnamed O_TMPFILE (no directory entry): only its descriptor shows it."""
    out = []
    for fd in Path(f"/proc/{svc.proc.pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(tmpdir)):
            out.append(target)
    return out


def _settle(svc: Service, start: float, n: int) -> None:
    """Until the server has read ``n`` upload bytes since ``start`` (or 10 s went by)."""
    deadline = time.monotonic() + 10
    while server_read(svc) - start < n and time.monotonic() < deadline:
        time.sleep(0.05)


def oversize_chunked(
    svc: Service, path: str, field: str, limit: int, tmpdir: Path, total: int = 40 * MiB
) -> tuple[int, str]:
    """A chunked ``total``-byte upload without Content-Length: (status, error code); asserts
    that the server read at most ``limit`` + 1 MiB and that nothing went to disk (checked
    half-way, 4 MiB in, and after the answer)."""
    on_disk = tmp_files(tmpdir)
    before = server_read(svc)
    up = RawUpload(svc.port, path, MULTIPART, chunked=True)
    try:
        assert up.send_chunks([multipart_head(BOUNDARY, field, "big.png"), *filler(4 * MiB)])
        _settle(svc, before, 4 * MiB)
        assert open_tmp_files(svc, tmpdir) == [], "the upload is being spooled to disk"
        finished = up.send_chunks(filler(total - 4 * MiB))
        if finished:
            up.finish()
        r = up.response(finished)
    finally:
        up.close()
    read = server_read(svc) - before
    assert not r.finished_body and r.sent < total, r.sent
    assert read <= limit + MiB, f"the server read {read / MiB:.2f} MiB before answering"
    assert tmp_files(tmpdir) == on_disk, "an upload was written to a temporary file"
    return r.status, r.json()["error"]["code"]


def large_file_in_memory(svc: Service, path: str, field: str, tmpdir: Path) -> tuple[int, str]:
    """A 6 MiB GIF (over Starlette's 1 MB spool threshold, under the limit), chunked: while
    it streams in and after the answer (415), nothing of it is on disk."""
    on_disk = tmp_files(tmpdir)
    start = server_read(svc)
    up = RawUpload(svc.port, path, MULTIPART, chunked=True)
    try:
        head = multipart_head(BOUNDARY, field, "x.gif", "image/gif")
        assert up.send_chunks([head, GIF, *filler(6 * MiB)])
        _settle(svc, start, 6 * MiB)
        assert open_tmp_files(svc, tmpdir) == [], "the upload is being spooled to disk"
        assert up.send_chunks([f"\r\n--{BOUNDARY}--\r\n".encode()])
        up.finish()
        r = up.response(finished=True)
    finally:
        up.close()
    assert tmp_files(tmpdir) == on_disk, "an upload was written to a temporary file"
    return r.status, r.json()["error"]["code"]


def wrong_type(svc: Service, path: str, total: int = 40 * MiB) -> tuple[int, str]:
    """A chunked body that is not multipart: refused before it is read in full (and before
    the reader takes a byte of it)."""
    before = server_read(svc)
    r = post_stream(svc.port, path, filler(total), {"Content-Type": "application/octet-stream"})
    assert not r.finished_body and r.sent < total, r.sent
    assert server_read(svc) - before == 0
    return r.status, r.json()["error"]["code"]


def budget_overflow(
    svc: Service, path: str, field: str, hold: int, budget: int, tmpdir: Path
) -> None:
    """One upload holds ``hold`` bytes of the in-flight ``budget`` half-way through its body:
    another that does not fit gets 503 ``overloaded`` with Retry-After (declared and chunked);
    once the first is gone, the budget is free again."""
    assert hold < budget < 2 * hold
    gauge = "irmi_upload_bytes_in_flight"
    first = RawUpload(svc.port, path, MULTIPART, chunked=True)
    try:
        assert first.send_chunks([multipart_head(BOUNDARY, field, "a.png"), *filler(hold)])
        deadline = time.monotonic() + 30
        while metric(svc, gauge) < hold:
            assert time.monotonic() < deadline, "the first upload never reached the server"
            time.sleep(0.05)
        assert open_tmp_files(svc, tmpdir) == [], "the upload is being spooled to disk"
        # Declared length that does not fit: 503 before the body is sent.
        size = budget - hold + MiB
        declared = RawUpload(
            svc.port, path, {**MULTIPART, "Content-Length": str(size)}, chunked=False
        )
        r = declared.response(finished=False)
        assert r.status == 503 and r.json()["error"]["code"] == "overloaded", r.body[:300]
        assert int(r.headers["retry-after"]) >= 1
        # Chunked: refused once its parts push the total over the budget.
        chunks = itertools.chain([multipart_head(BOUNDARY, field, "b.png")], filler(hold))
        r = post_stream(svc.port, path, chunks, MULTIPART)
        assert r.status == 503 and r.json()["error"]["code"] == "overloaded", r.body[:300]
        assert "retry-after" in r.headers and not r.finished_body
    finally:
        first.close()
    deadline = time.monotonic() + 30
    while metric(svc, gauge) > 0:
        assert time.monotonic() < deadline, "the budget was not given back"
        time.sleep(0.05)
