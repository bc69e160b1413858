"""The data layer for study writes: every change to a study, its files and its events goes
through here, from the routes (upload, re-run) and from the mammography relay alike.

The stored original keeps the patient's identity (the clinical record needs it: results go
back to the right patient); what the inference services receive is the de-identified copy
(:mod:`gateway.deidentify`). Blobs are written before the rows that reference them, so a row
never points at a missing blob (an orphan blob from a failed request is harmless: content-
addressed, and deleted with the last study that uses it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import UploadFile
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import score_overlay
from gateway.deidentify import for_inference, for_storage
from gateway.deps import Principal, audit
from gateway.mammo_point import effective_exam
from gateway.models import Study, StudyEvent, StudyFile, new_id
from gateway.operating_point import EffectiveReading, effective_reading
from gateway.schemas import ChestResult, ExamResultPublic, FileRef
from gateway.state import GatewayState
from gateway.studies import (
    TERMINAL,
    add_event,
    decode_png_b64,
    fail_study,
    heatmap_url,
    read_upload,
)
from gateway.upstream import UploadPart
from shared.clock import now
from shared.contracts.chest import ChestPrediction
from shared.contracts.mammo import Exam, ExamResult, ProgressEvent, ViewResult
from shared.contracts.screening import ScoreMap
from shared.errors import Conflict, Forbidden

TAGS = {"L-CC", "R-CC", "L-MLO", "R-MLO"}
# A JPEG/PNG this small is cleaned of its metadata on the loop: walking its segments/chunks and
# one copy take well under a millisecond, less than handing it to a thread and back.
INLINE_STRIP_BYTES = 2 * 1024 * 1024
RERUN = "rerun"  # the ``reason`` of the ``retry`` event that starts a re-run
OVERLAY = "score_map"  # a chest overlay (``/heatmaps/score_map``); a view's: ``view-0-score_map``


class StudyGone(Exception):
    """The study was deleted while a background writer (the relay) worked on it."""


@dataclass
class Image:
    """One uploaded image: ``data`` is what the store keeps (identity kept, JPEG metadata
    stripped), ``forward`` the de-identified copy sent to an inference service."""

    name: str
    tag: str | None
    media_type: str
    data: bytes
    forward: bytes
    position: int = 0

    def part(self) -> UploadPart:
        field = self.tag if self.tag in TAGS else None
        return field or "files", (f"view-{self.position}", self.forward, self.media_type)


async def read_image(
    upload: UploadFile, max_bytes: int, *, name: str, tag: str | None = None, position: int = 0
) -> Image:
    """Read, sniff and clean one upload (the parsing runs off the event loop)."""
    raw, media_type = await read_upload(upload, max_bytes)
    if media_type != "application/dicom" and len(raw) <= INLINE_STRIP_BYTES:
        data, forward = _stored_and_forwarded(raw, media_type)  # cheaper than a thread hop
    else:
        data, forward = await asyncio.to_thread(_stored_and_forwarded, raw, media_type)
    return Image(name, tag, media_type, data, forward, position)


def _stored_and_forwarded(raw: bytes, media_type: str) -> tuple[bytes, bytes]:
    """The stored copy and the de-identified one, in one trip off the event loop."""
    data = for_storage(raw, media_type)
    return data, for_inference(data, media_type)


async def read_views(views: list[tuple[str | None, UploadFile]], max_bytes: int) -> list[Image]:
    return [
        await read_image(f, max_bytes, name=tag or f"view-{i}", tag=tag, position=i)
        for i, (tag, f) in enumerate(views)
    ]


async def stored_images(state: GatewayState, study_id: str) -> list[Image]:
    """A study's original images from the store, in upload order, with their de-identified
    copies (for a re-submission)."""
    async with state.sessions() as session:
        rows = list(
            await session.scalars(
                select(StudyFile)
                .where(StudyFile.study_id == study_id, StudyFile.role == "original")
                .order_by(StudyFile.position)
            )
        )
    if not rows:
        raise StudyGone
    out = []
    for i, row in enumerate(rows):
        data = await state.store.get(row.blob_key)
        forward = await asyncio.to_thread(for_inference, data, row.media_type)
        tag = row.name if row.name in TAGS else None
        out.append(Image(row.name, tag, row.media_type, data, forward, i))
    return out


# ----------------------------------------------------------------------------- blobs
async def put_originals(state: GatewayState, study_id: str, images: list[Image]) -> list[StudyFile]:
    return [
        StudyFile(
            study_id=study_id,
            role="original",
            name=img.name,
            blob_key=await state.store.put(img.data),
            media_type=img.media_type,
            size=len(img.data),
            position=img.position,
        )
        for img in images
    ]


async def put_heatmap(
    state: GatewayState, study_id: str, name: str, b64: str, position: int = 0
) -> StudyFile:
    png = decode_png_b64(b64)
    return StudyFile(
        study_id=study_id,
        role="heatmap",
        name=name,
        blob_key=await state.store.put(png),
        media_type="image/png",
        size=len(png),
        position=position,
    )


# ----------------------------------------------------------------------------- create
async def _add_study(
    session: AsyncSession,
    principal: Principal,
    study_id: str,
    kind: str,
    files: list[StudyFile],
    result: dict[str, Any] | None = None,
) -> Study:
    """Add the caller's new study and its file rows to the session: with a ``result`` it is
    finished (``succeeded``), without one ``queued`` (result left unset: SQL NULL)."""
    ts = now()
    finished = {"finished_at": ts, "result": result} if result is not None else {}
    study = Study(
        id=study_id,
        owner_id=principal.user.id,
        kind=kind,
        status="succeeded" if result is not None else "queued",
        created_at=ts,
        updated_at=ts,
        **finished,
    )
    session.add(study)
    await session.flush()
    session.add_all(files)
    return study


async def put_overlay(
    state: GatewayState,
    study_id: str,
    score_map: ScoreMap | None,
    score: float,
    reading: EffectiveReading,
    name: str = OVERLAY,
    position: int = 0,
) -> tuple[StudyFile, FileRef] | None:
    """A score map rendered at display size (long side at most 1024 px), scaled to its score
    at ``reading``'s point, stored as the heatmap ``name``; None when there is no map."""
    if score_map is None:
        return None
    overlay = await asyncio.to_thread(score_overlay.render, score_map, score, reading)
    if overlay is None:
        return None
    row = StudyFile(
        study_id=study_id,
        role="heatmap",
        name=name,
        blob_key=await state.store.put(overlay.png),
        media_type="image/png",
        size=len(overlay.png),
        position=position,
    )
    ref = FileRef(
        url=heatmap_url(study_id, name),
        width=overlay.width,
        height=overlay.height,
        covers=overlay.covers,
    )
    return row, ref


async def create_chest(
    state: GatewayState,
    session: AsyncSession,
    principal: Principal,
    image: Image,
    prediction: ChestPrediction,
    study_id: str | None = None,
) -> tuple[Study, list[StudyFile]]:
    """A chest study, finished at once with tb_service's prediction and the reading at the
    effective operating point (its overlay rendered and stored). ``study_id``: an id chosen
    by the caller (who adds its own rows to ``session``, committed with the study)."""
    study_id = study_id or new_id()
    files = await put_originals(state, study_id, [image])
    reading = await effective_reading(state, prediction, session)
    heatmap: FileRef | None = None
    stored = await put_overlay(state, study_id, prediction.score_map, prediction.score, reading)
    if stored is not None:
        files.append(stored[0])
        heatmap = stored[1]
    result = ChestResult.model_validate(
        {**prediction.model_dump(exclude={"heatmap"}), "heatmap": heatmap, "effective": reading}
    ).model_dump(mode="json")
    study = await _add_study(session, principal, study_id, "chest", files, result=result)
    await add_event(
        session,
        study_id,
        "result",
        {"study_id": study_id, "status": "succeeded", "chest_result": result},
    )
    audit(session, principal, "create", study_id)
    await session.commit()
    return study, files


async def create_mammography(
    state: GatewayState,
    session: AsyncSession,
    principal: Principal,
    images: list[Image],
    study_id: str | None = None,
) -> Study:
    """A queued mammography study with its stored views (the relay takes it from here);
    ``study_id`` as for :func:`create_chest`."""
    study_id = study_id or new_id()
    files = await put_originals(state, study_id, images)
    study = await _add_study(session, principal, study_id, "mammography", files)
    audit(session, principal, "create", study_id)
    await session.commit()
    return study


# ----------------------------------------------------------------------------- background writes
async def with_study(
    state: GatewayState,
    study_id: str,
    fn: Callable[[AsyncSession, Study], Awaitable[None]],
) -> None:
    """Apply ``fn`` to the study in its own short transaction; :class:`StudyGone` if deleted."""
    async with state.sessions() as session:
        study = await session.get(Study, study_id)
        if study is None:
            raise StudyGone
        await fn(session, study)
        await session.commit()


async def fail(
    state: GatewayState, study_id: str, code: str, message: str, details: dict[str, Any]
) -> None:
    async def apply(session: AsyncSession, study: Study) -> None:
        await fail_study(session, study, code, message, details)

    try:
        await with_study(state, study_id, apply)
    except StudyGone:
        return


async def record_progress(state: GatewayState, study_id: str, progress: ProgressEvent) -> None:
    data = progress.model_dump(mode="json")

    async def apply(session: AsyncSession, study: Study) -> None:
        if study.status in TERMINAL:
            return
        study.status = "running"
        study.progress = data
        study.updated_at = now()
        await add_event(session, study_id, "progress", data)

    await with_study(state, study_id, apply)


async def record_upstream_id(state: GatewayState, study_id: str, upstream_id: str) -> None:
    async def apply(session: AsyncSession, study: Study) -> None:
        study.upstream_id = upstream_id[:64]
        study.status = "running"
        study.updated_at = now()

    await with_study(state, study_id, apply)


async def record_retry(state: GatewayState, study_id: str, data: dict[str, Any]) -> None:
    """A ``retry`` event: the exam is submitted again and its progress starts over."""

    async def apply(session: AsyncSession, study: Study) -> None:
        study.updated_at = now()
        await add_event(session, study_id, "retry", {"study_id": study_id, **data})

    await with_study(state, study_id, apply)


async def put_view_overlay(
    state: GatewayState, study_id: str, view: ViewResult, exam: ExamResult, position: int
) -> tuple[StudyFile, FileRef] | None:
    """A view's score map at the threshold the view was read at (a view read from its own
    breast alone has the unilateral point), stored as the ``{view_id}-score_map`` heatmap."""
    alone = view.comparison == "unilateral" and exam.unilateral_operating_point is not None
    reading = EffectiveReading(
        category=view.category,
        score_threshold=view.score_threshold
        if view.score_threshold is not None
        else exam.score_threshold,
        operating_point=exam.unilateral_operating_point if alone else exam.operating_point,
    )
    name = f"{view.view_id}-{OVERLAY}"
    return await put_overlay(
        state, study_id, view.score_map, view.score, reading, name=name, position=position
    )


async def finish_mammography(state: GatewayState, study_id: str, exam: Exam) -> None:
    """Store bc_service's result read at the effective points (the site's where one applies,
    :mod:`gateway.mammo_point`), the overlays (rendered from each view's score map; inline
    PNGs, from a bc_service run with the deprecated ``heatmaps``, stored as they come) and
    mark the study succeeded. A study that another replica's relay already finished is left
    as it is."""
    assert exam.result is not None
    exam = exam.model_copy(update={"result": await effective_exam(state, exam.result)})
    assert exam.result is not None
    files: list[StudyFile] = []
    views: list[dict[str, Any]] = []
    for view in exam.result.views:
        refs: dict[str, FileRef] = {}
        stored = await put_view_overlay(state, study_id, view, exam.result, len(files))
        if stored is not None:
            files.append(stored[0])
            refs[OVERLAY] = stored[1]
        for name, png in view.heatmaps.items():
            file_name = f"{view.view_id}-{name}"
            files.append(await put_heatmap(state, study_id, file_name, png.base64, len(files)))
            refs[name] = FileRef(
                url=heatmap_url(study_id, file_name), width=png.width, height=png.height
            )
        views.append({**view.model_dump(exclude={"heatmaps"}), "heatmaps": refs})
    public = ExamResultPublic.model_validate(
        {**exam.result.model_dump(exclude={"views"}), "views": views}
    )
    result = public.model_dump(mode="json")

    async def apply(session: AsyncSession, study: Study) -> None:
        if study.status in TERMINAL:
            return
        session.add_all(files)
        study.status = "succeeded"
        study.result = result
        study.progress = None
        study.finished_at = study.updated_at = now()
        await add_event(
            session,
            study_id,
            "result",
            {"study_id": study_id, "status": "succeeded", "mammography_result": result},
        )

    await with_study(state, study_id, apply)


# ----------------------------------------------------------------------------- re-run
async def run_events(session: AsyncSession, study_id: str) -> tuple[int, list[StudyEvent]]:
    """The seq of the event that started the current run (0: the upload; else the last
    re-run's ``retry`` event) and the ``retry`` events of this run after it."""
    rows = list(
        await session.scalars(
            select(StudyEvent)
            .where(StudyEvent.study_id == study_id, StudyEvent.event == "retry")
            .order_by(StudyEvent.seq)
        )
    )
    start = 0
    for row in rows:
        if row.data.get("reason") == RERUN:
            start = row.seq
    return start, [r for r in rows if r.seq > start]


async def rerun(session: AsyncSession, principal: Principal, study: Study) -> int:
    """Put a failed study back in the queue (its stored images are submitted again); returns
    the seq of the re-run's event: the new run's events follow it."""
    if study.owner_id != principal.user.id:
        raise Forbidden("Only the patient who uploaded a study may run it again.")
    conflict = Conflict(
        "Only a failed mammography study can be run again.",
        details={"status": study.status, "kind": study.kind},
    )
    if study.status != "failed" or study.kind != "mammography":
        raise conflict
    # One conditional UPDATE: of two re-runs sent at once, only one starts a relay.
    claimed = await session.execute(
        update(Study)
        .where(Study.id == study.id, Study.status == "failed")
        .values(
            status="queued",
            error=None,
            progress=None,
            result=None,
            finished_at=None,
            upstream_id=None,
            updated_at=now(),
        )
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise conflict
    event = await add_event(
        session,
        study.id,
        "retry",
        {"study_id": study.id, "attempt": 1, "code": RERUN, "reason": RERUN},
    )
    audit(session, principal, "rerun", study.id)
    await session.commit()
    return event.seq
