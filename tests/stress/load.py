"""Concurrent uploads against the running system (gateway + tb_service + bc_service + SQLite),
then the books are checked: every answer 2xx or 503 with Retry-After; each accepted upload has
exactly one study row, one original-image row and its blob in the store (bytes identical); no
study that was refused exists; the API lists exactly the accepted studies; memory before/after.

Used by tests/stress/test_load.py (small) and `make load` (200 concurrent)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.bc_service.images import mammogram
from tests.stress.system import System, signup, vm_hwm_kib, vm_rss_kib
from tests.tb_service.svc_helpers import chest_png


@dataclass
class LoadReport:
    uploads: int
    concurrency: int
    wall_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    accepted: int = 0
    refused_503: int = 0
    bad: list[str] = field(default_factory=list)  # anything that is not 2xx or 503+Retry-After
    problems: list[str] = field(default_factory=list)  # lost / duplicated / inconsistent
    rss_kib: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "uploads": self.uploads,
            "concurrency": self.concurrency,
            "wall_s": round(self.wall_s, 2),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "accepted": self.accepted,
            "refused_503_retry_after": self.refused_503,
            "bad_responses": self.bad,
            "problems": self.problems,
            "rss_kib": self.rss_kib,
        }


def _memory(system: System) -> dict[str, tuple[int, int]]:
    return {
        name: (vm_rss_kib(svc.proc.pid), vm_hwm_kib(svc.proc.pid))
        for name, svc in (
            ("gateway", system.gw),
            ("tb_service", system.tb),
            ("bc_service", system.bc),
        )
    }


async def _wait_terminal(c: httpx.AsyncClient, url: str, limit_s: float) -> str:
    deadline = time.monotonic() + limit_s
    while True:
        status = str((await c.get(url)).json()["status"])
        if status in {"succeeded", "failed"} or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.2)


def run_load(system: System, uploads: int, mammo_every: int = 20) -> LoadReport:
    """``uploads`` uploads all at once (every ``mammo_every``-th a 1-view mammography study),
    each with distinct image bytes, by a fresh patient; then the checks."""
    return asyncio.run(_run(system, uploads, mammo_every))


async def _run(system: System, uploads: int, mammo_every: int) -> LoadReport:
    report = LoadReport(uploads=uploads, concurrency=uploads)
    token, _ = signup(system.gw.url)
    before = _memory(system)
    images: list[tuple[str, bytes]] = []
    for i in range(uploads):
        if mammo_every and i % mammo_every == mammo_every - 1:
            images.append(("mammography", mammogram(seed=i)))
        else:
            images.append(("chest", chest_png(160, 140, seed=10_000 + i)))
    limits = httpx.Limits(max_connections=uploads + 10, max_keepalive_connections=uploads + 10)
    accepted: dict[str, tuple[str, bytes]] = {}
    async with httpx.AsyncClient(
        base_url=system.gw.url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(300, connect=60, pool=300),
        limits=limits,
    ) as c:

        async def one(kind: str, data: bytes) -> None:
            if kind == "chest":
                r = await c.post("/v1/studies/chest", files={"file": ("x.png", data, "image/png")})
            else:
                r = await c.post(
                    "/v1/studies/mammography", files=[("files", ("m.png", data, "image/png"))]
                )
            report.statuses[r.status_code] = report.statuses.get(r.status_code, 0) + 1
            if 200 <= r.status_code < 300:
                sid = r.json()["id"]
                if sid in accepted:
                    report.problems.append(f"study id {sid} returned twice")
                accepted[sid] = (kind, data)
            elif r.status_code == 503 and int(r.headers.get("retry-after", "0")) > 0:
                report.refused_503 += 1
            else:
                report.bad.append(f"{r.status_code} {r.text[:200]}")

        start = time.perf_counter()
        await asyncio.gather(*(one(kind, data) for kind, data in images))
        report.wall_s = time.perf_counter() - start
        report.accepted = len(accepted)
        # every accepted mammography study ends (never stuck running)
        for sid, (kind, _) in accepted.items():
            if kind == "mammography":
                status = await _wait_terminal(c, f"/v1/studies/{sid}", 300)
                if status not in {"succeeded", "failed"}:
                    report.problems.append(f"mammography study {sid} stuck {status}")
        # the API lists exactly the accepted studies
        listed: list[str] = []
        while True:
            page = (await c.get("/v1/studies", params={"limit": 100, "offset": len(listed)})).json()
            listed += [s["id"] for s in page["items"]]
            if not page["items"] or len(listed) >= page["total"]:
                break
        if sorted(listed) != sorted(accepted):
            report.problems.append(
                f"API lists {len(listed)} studies ({len(set(listed))} distinct), "
                f"{len(accepted)} accepted"
            )
        # each accepted study: its stored original is the uploaded bytes
        for sid, (_, data) in list(accepted.items())[:: max(1, len(accepted) // 25)]:
            body = (await c.get(f"/v1/studies/{sid}")).json()
            got = await c.get(body["images"][0]["url"])
            if got.content != data:
                report.problems.append(f"study {sid}: stored image differs")
    # the database and the image store
    marks = ",".join("?" * len(accepted))
    rows = system.sql(
        "SELECT s.id, COUNT(f.id), MIN(f.blob_key) FROM studies s "
        "LEFT JOIN study_files f ON f.study_id = s.id AND f.role = 'original' "
        f"WHERE s.id IN ({marks}) GROUP BY s.id",
        *accepted,
    )
    by_id = {sid: (n, key) for sid, n, key in rows}
    on_disk = {p.name for p in system.blobs()}
    for sid, (_, data) in accepted.items():
        if sid not in by_id:
            report.problems.append(f"accepted study {sid} has no row")
            continue
        n, key = by_id[sid]
        if n != 1:
            report.problems.append(f"study {sid} has {n} original images")
        if key != hashlib.sha256(data).hexdigest():
            report.problems.append(f"study {sid}: blob key is not the upload's sha256")
        if key not in on_disk:
            report.problems.append(f"study {sid}: blob missing from the store")
    owner_of = "(SELECT owner_id FROM studies WHERE id = ?)"
    first = next(iter(accepted), "")
    total_rows = system.sql(f"SELECT COUNT(*) FROM studies WHERE owner_id = {owner_of}", first)[0][
        0
    ]
    if total_rows != len(accepted):
        report.problems.append(f"{total_rows} study rows for {len(accepted)} accepted uploads")
    after = _memory(system)
    for name in before:
        report.rss_kib[name] = {
            "rss_before": before[name][0],
            "rss_after": after[name][0],
            "peak": after[name][1],
        }
    return report


def main() -> int:
    """``make load``: the system on loopback, ``IRMI_LOAD_UPLOADS`` (default 200) concurrent
    uploads, the report as JSON; exit status 1 on any bad answer or lost/duplicated study.
    ``IRMI_LOAD_MODE=streams``: held event streams instead (tests/stress/streams_load.py)."""
    import json
    import os
    import sys
    import tempfile
    from pathlib import Path

    from tests.stress.system import running_system

    if os.environ.get("IRMI_LOAD_MODE") == "streams":
        from tests.stress import streams_load

        return streams_load.main()

    uploads = int(os.environ.get("IRMI_LOAD_UPLOADS", "200"))
    with running_system(Path(tempfile.mkdtemp(prefix="irmi-load-"))) as system:
        report = run_load(system, uploads)
    print(json.dumps(report.as_dict(), indent=2))
    ok = not report.bad and not report.problems
    print("load held: nothing lost or duplicated" if ok else "LOAD FAILED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
