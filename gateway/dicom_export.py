"""Results back to the PACS: for a received study whose IRMI study succeeded, build the SR
(:mod:`gateway.dicom_sr`) and one overlay Secondary Capture per analysed image
(:mod:`gateway.dicom_sc`) once, store them, and record each as a ``pending`` export; then send
the due exports (:mod:`gateway.dicom_send`), each retried with a doubling backoff up to
``dicom_export_attempts`` sends, after which it is ``failed``. Every export row says what was
sent where: its SOP Instance UID, status, attempts and last error (admins read them at
``GET /v1/admin/dicom/exports``). Objects keep their UIDs across retries, so a PACS that
stored one whose answer was lost just stores it again.
"""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from gateway.dicom_findings import CATEGORY_WORDS, ResultSummary, ViewFinding
from gateway.dicom_send import SendFailed, destination, send
from gateway.dicom_tables import DicomExport, DicomStudy
from gateway.models import Study, StudyFile
from gateway.state import GatewayState
from shared.clock import now
from shared.contracts.common import CropBox, ModelRef
from shared.contracts.screening import Category, OperatingPoint

log = logging.getLogger("irmi.gateway.dicom")
OVERLAY = "score_map"


@dataclass(frozen=True)
class Source:
    """An analysed image: its stored bytes, and its overlay (PNG and the box it covers)."""

    data: bytes
    overlay: bytes | None
    covers: CropBox | None
    tag: str | None = None
    score: float | None = None
    category: Category | None = None


@dataclass(frozen=True)
class Built:
    kind: str  # sr | sc
    sop_class_uid: str
    sop_instance_uid: str
    data: bytes


def _point(value: Any) -> OperatingPoint | None:
    return OperatingPoint.model_validate(value) if value else None


def summarize(kind: str, result: dict[str, Any], views: list[ViewFinding]) -> ResultSummary:
    """The stored result of an IRMI study, as the SR states it."""
    models = [ModelRef.model_validate(m) for m in result.get("models") or []]
    if kind == "chest":
        effective = result.get("effective") or {}
        return ResultSummary(
            kind=kind,
            category=Category(effective.get("category") or result["category"]),
            score=result.get("score"),
            score_threshold=effective.get("score_threshold"),
            operating_point=_point(
                effective.get("operating_point") or result.get("operating_point")
            ),
            models=models,
            statement=str(result.get("disclaimer") or ""),
            views=views,
        )
    return ResultSummary(
        kind=kind,
        category=Category(result["category"]),
        score=result.get("score"),
        score_threshold=result.get("score_threshold"),
        operating_point=_point(result.get("operating_point")),
        models=models,
        statement=str(result.get("disclaimer") or ""),
        views=views,
    )


def _caption(category: Category | None, score: float | None, threshold: float | None) -> str:
    words = CATEGORY_WORDS[category] if category is not None else "no reading"
    figures = f" | score {score:.0f}" if score is not None else ""
    if score is not None and threshold is not None:
        figures += f" (threshold {threshold:.0f})"
    return f"IRMI screening aid, not a diagnosis | {words}{figures}"


# Type 2 attributes of the patient and study modules: present (empty when unknown) in what
# IRMI writes, even when a modality left them out of the source.
TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


def _header(data: bytes) -> Any:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    for keyword in TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def build_objects(kind: str, result: dict[str, Any], sources: list[Source]) -> list[Built]:
    """The SR and the Secondary Captures of one finished study (CPU: run in a thread)."""
    # Imported here, in the worker thread, rather than at every gateway start-up: highdicom
    # and pydicom take about a third of a second to import.
    from pydicom.uid import generate_uid

    from gateway.dicom_sc import build_sc, compose, encode
    from gateway.dicom_sr import build_sr

    datasets = [_header(s.data) for s in sources]
    views = [
        ViewFinding(str(ds.SOPClassUID), str(ds.SOPInstanceUID), s.tag, s.score, s.category)
        for ds, s in zip(datasets, sources, strict=True)
    ]
    summary = summarize(kind, result, views)
    sr = build_sr(datasets, summary, generate_uid(), generate_uid())
    out = [Built("sr", str(sr.SOPClassUID), str(sr.SOPInstanceUID), encode(sr))]
    sc_series = generate_uid()
    for number, (ds, s) in enumerate(zip(datasets, sources, strict=True), start=1):
        category = s.category or summary.category
        score = s.score if s.score is not None else summary.score
        pixels = compose(
            s.data, s.overlay, s.covers, _caption(category, score, summary.score_threshold)
        )
        sc = build_sc(ds, pixels, sc_series, generate_uid(), number)
        out.append(Built("sc", str(sc.SOPClassUID), str(sc.SOPInstanceUID), encode(sc)))
    return out


def _covers(ref: Any) -> CropBox | None:
    if not isinstance(ref, dict) or not ref.get("covers"):
        return None
    return CropBox.model_validate(ref["covers"])


async def _sources(state: GatewayState, study: Study, files: list[StudyFile]) -> list[Source]:
    result = study.result or {}
    heat = {f.name: f for f in files if f.role == "heatmap"}
    originals = sorted((f for f in files if f.role == "original"), key=lambda f: f.position)

    async def png(name: str) -> bytes | None:
        row = heat.get(name)
        return await state.store.get(row.blob_key) if row is not None else None

    out = []
    if study.kind == "chest":
        for f in originals:
            covers = _covers(result.get("heatmap"))
            out.append(Source(await state.store.get(f.blob_key), await png(OVERLAY), covers))
        return out
    views = {v.get("view_id"): v for v in result.get("views", [])}
    for f in originals:
        view = views.get(f"view-{f.position}", {})
        name = f"view-{f.position}-{OVERLAY}"
        category = Category(view["category"]) if view.get("category") else None
        out.append(
            Source(
                await state.store.get(f.blob_key),
                await png(name),
                _covers((view.get("heatmaps") or {}).get(OVERLAY)),
                view.get("tag"),
                view.get("score"),
                category,
            )
        )
    return out


async def build_exports(state: GatewayState, dicom_study_id: str) -> None:
    """Close a received study whose IRMI study succeeded: its results built, stored and
    queued for sending (none when no destination is configured)."""
    async with state.sessions() as session:
        row = await session.get(DicomStudy, dicom_study_id)
        if row is None or row.study_id is None or row.status != "analysing":
            return
        study = await session.get(Study, row.study_id)
        files = list(
            await session.scalars(select(StudyFile).where(StudyFile.study_id == row.study_id))
        )
    built: list[Built] = []
    if study is not None and study.result is not None and state.settings.dicom_dest != "none":
        sources = await _sources(state, study, files)
        built = await asyncio.to_thread(build_objects, study.kind, study.result, sources)
    keys = [await state.store.put(b.data) for b in built]
    where = destination(state.settings)
    async with state.sessions() as session:
        closed = await session.execute(
            update(DicomStudy)
            .where(DicomStudy.id == dicom_study_id, DicomStudy.status == "analysing")
            .values(status="done", finished_at=now())
        )
        if closed.rowcount != 1:  # type: ignore[attr-defined]
            await session.rollback()
            return
        for b, key in zip(built, keys, strict=True):
            session.add(
                DicomExport(
                    dicom_study_id=dicom_study_id,
                    study_id=row.study_id,
                    kind=b.kind,
                    study_uid=row.study_uid,
                    sop_instance_uid=b.sop_instance_uid,
                    sop_class_uid=b.sop_class_uid,
                    blob_key=key,
                    destination=where,
                    status="pending",
                    attempts=0,
                )
            )
        await session.commit()


def backoff_s(state: GatewayState, attempts: int) -> float:
    s = state.settings
    return float(min(s.dicom_export_backoff_max_s, s.dicom_export_backoff_s * 2 ** (attempts - 1)))


async def send_one(state: GatewayState, export_id: str) -> None:
    """Claim one due export (a lease of a few timeouts), send it, record the outcome."""
    ts = now()
    lease = ts + timedelta(seconds=3 * state.settings.dicom_timeout_s)
    async with state.sessions() as session:
        claimed = await session.execute(
            update(DicomExport)
            .where(
                DicomExport.id == export_id,
                DicomExport.status == "pending",
                DicomExport.next_attempt_at <= ts,
            )
            .values(next_attempt_at=lease)
        )
        await session.commit()
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return
        export = await session.get(DicomExport, export_id)
        assert export is not None
        blob = export.blob_key
    error: str | None = None
    try:
        data = await state.store.get(blob)
        await asyncio.to_thread(send, state.settings, data)
    except SendFailed as exc:
        error = str(exc)[:500]
    except Exception as exc:  # a store or library failure: recorded, retried like the rest
        error = f"{type(exc).__name__}: {exc}"[:500]
    async with state.sessions() as session:
        export = await session.get(DicomExport, export_id)
        if export is None:
            return
        export.attempts += 1
        export.last_error = error
        if error is None:
            export.status, export.sent_at = "sent", now()
        elif export.attempts >= state.settings.dicom_export_attempts:
            export.status = "failed"
        else:
            export.next_attempt_at = now() + timedelta(seconds=backoff_s(state, export.attempts))
        await session.commit()
    if error is not None:
        log.warning("dicom export not sent: %s", error, extra={"export_id": export_id})


async def send_due(state: GatewayState, limit: int = 16) -> None:
    async with state.sessions() as session:
        due = list(
            await session.scalars(
                select(DicomExport.id)
                .where(DicomExport.status == "pending", DicomExport.next_attempt_at <= now())
                .order_by(DicomExport.next_attempt_at)
                .limit(limit)
            )
        )
    for export_id in due:
        await send_one(state, export_id)
