"""Mammography relay: reads bc_service's SSE stream (submitted in stream mode) and persists
every progress event and the final result in the gateway's database as they arrive.

The relay runs as a background task owned by the replica that accepted the upload; it keeps
going whether or not a client listens. Clients read ``/v1/studies/{id}/events`` from the
database, so any replica serves them. If bc_service dies mid-exam, the relay submits the exam
again from the stored images (``exam_attempts`` in all, a ``retry`` event each time) before the
study ends ``failed``. A relay keeps a lease (the study's ``updated_at``, refreshed every
``relay_lease_s / 3``); every replica sweeps for studies whose lease expired (their replica
stopped or died), claims each with one conditional UPDATE and restarts its relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import ValidationError
from sqlalchemy import func, select, update

from gateway.models import Study, StudyEvent, StudyFile
from gateway.schemas import ExamResultPublic, FileRef
from gateway.state import GatewayState
from gateway.studies import (
    add_event,
    decode_png_b64,
    expire_if_stale,
    fail_study,
    heatmap_url,
    now,
)
from gateway.upstream import UploadPart, UpstreamError, iter_sse, status_for_code
from shared.contracts.mammo import Exam, ProgressEvent
from shared.errors import ServiceUnavailable

log = logging.getLogger("irmi.gateway.relay")


class _Gone(Exception):
    """The study was deleted while its relay ran."""


async def _with_study(state: GatewayState, study_id: str, fn: Any) -> None:
    async with state.sessions() as session:
        study = await session.get(Study, study_id)
        if study is None:
            raise _Gone
        await fn(session, study)
        await session.commit()


async def _fail(
    state: GatewayState, study_id: str, code: str, message: str, details: dict[str, Any]
) -> None:
    async def apply(session: Any, study: Study) -> None:
        await fail_study(session, study, code, message, details)

    with contextlib.suppress(_Gone):
        await _with_study(state, study_id, apply)


async def _store_result(state: GatewayState, study_id: str, exam: Exam) -> None:
    assert exam.result is not None
    stored: list[tuple[str, str, int]] = []
    views: list[dict[str, Any]] = []
    for view in exam.result.views:
        refs: dict[str, FileRef] = {}
        for name, png in view.heatmaps.items():
            data = decode_png_b64(png.base64)
            key = await state.store.put(data)
            file_name = f"{view.view_id}-{name}"
            stored.append((file_name, key, len(data)))
            refs[name] = FileRef(
                url=heatmap_url(study_id, file_name), width=png.width, height=png.height
            )
        views.append({**view.model_dump(exclude={"heatmaps"}), "heatmaps": refs})
    public = ExamResultPublic.model_validate(
        {**exam.result.model_dump(exclude={"views"}), "views": views}
    )
    result = public.model_dump(mode="json")

    async def apply(session: Any, study: Study) -> None:
        if study.status in {"succeeded", "failed"}:  # another replica's relay finished it
            return
        for i, (file_name, key, size) in enumerate(stored):
            session.add(
                StudyFile(
                    study_id=study_id,
                    role="heatmap",
                    name=file_name,
                    blob_key=key,
                    media_type="image/png",
                    size=size,
                    position=i,
                )
            )
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

    await _with_study(state, study_id, apply)


async def _on_progress(state: GatewayState, study_id: str, progress: ProgressEvent) -> None:
    data = progress.model_dump(mode="json")

    async def apply(session: Any, study: Study) -> None:
        if study.status in {"succeeded", "failed"}:
            return
        study.status = "running"
        study.progress = data
        study.updated_at = now()
        await add_event(session, study_id, "progress", data)

    await _with_study(state, study_id, apply)


async def _on_upstream_id(state: GatewayState, study_id: str, upstream_id: str) -> None:
    async def apply(session: Any, study: Study) -> None:
        study.upstream_id = upstream_id[:64]
        study.status = "running"
        study.updated_at = now()

    await _with_study(state, study_id, apply)


def error_of(data: Any) -> tuple[str, str, dict[str, Any]]:
    err = data.get("error", data) if isinstance(data, dict) else {}
    if not isinstance(err, dict):
        err = {}
    details = err.get("details") if isinstance(err.get("details"), dict) else {}
    return (
        str(err.get("code") or "processing_failed"),
        str(err.get("message") or "The mammography analysis failed."),
        details or {},
    )


Outcome = tuple[str, str, dict[str, Any]] | None  # None: the study ended; else an error to retry

_LOST = (
    "service_unavailable",
    "The mammography service stopped before finishing (it may have restarted); "
    "please upload the exam again.",
)
TAGS = {"L-CC", "R-CC", "L-MLO", "R-MLO"}
ACTIVE = ("queued", "running")


def _retryable(code: str) -> bool:
    return status_for_code(code) >= 500 or code == "rate_limited"


async def _consume(state: GatewayState, study_id: str, resp: httpx.Response) -> Outcome:
    """Relay one upstream stream. None when the study ended (result, or an error that a retry
    would not change); else the error of a lost attempt (bc_service died or was overloaded)."""
    try:
        async for ev in iter_sse(resp):
            try:
                data = ev.json()
            except ValueError:
                log.warning("unparsable upstream event", extra={"study_id": study_id})
                continue
            if ev.event == "progress":
                try:
                    progress = ProgressEvent.model_validate(data)
                except ValidationError:
                    continue
                await _on_progress(state, study_id, progress)
            elif ev.event in {"result", "error"}:
                if ev.event == "result":
                    exam = Exam.model_validate(data)
                    if exam.status == "succeeded" and exam.result is not None:
                        await _store_result(state, study_id, exam)
                        return None
                    code, message, details = error_of(exam.error or {})
                else:
                    code, message, details = error_of(data)
                if _retryable(code):
                    return code, message, {**details, "upstream": "bc_service"}
                await _fail(state, study_id, code, message, details)
                return None
            elif isinstance(data, dict) and isinstance(data.get("id"), str):
                await _on_upstream_id(state, study_id, data["id"])
        return (*_LOST, {"upstream": "bc_service", "reason": "stream_ended"})
    except httpx.HTTPError as exc:
        reason = "timeout" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
        return (
            "service_unavailable",
            "Lost the connection to the mammography service mid-exam; please upload again.",
            {"upstream": "bc_service", "reason": reason},
        )
    finally:
        await resp.aclose()


async def _resubmit(state: GatewayState, study_id: str) -> httpx.Response:
    """Submit the exam again from the study's stored original images (tags as uploaded)."""
    async with state.sessions() as session:
        rows = list(
            (
                await session.execute(
                    select(StudyFile)
                    .where(StudyFile.study_id == study_id, StudyFile.role == "original")
                    .order_by(StudyFile.position)
                )
            ).scalars()
        )
    if not rows:
        raise _Gone
    parts: list[UploadPart] = []
    for i, row in enumerate(rows):
        data = await state.store.get(row.blob_key)
        field = row.name if row.name in TAGS else "files"
        parts.append((field, (f"view-{i}", data, row.media_type)))
    return await state.upstreams.open_exam_stream(parts)


async def _record_retry(
    state: GatewayState, study_id: str, attempt: int, code: str, reason: str
) -> None:
    data = {
        "study_id": study_id,
        "attempt": attempt,
        "max_attempts": state.settings.exam_attempts,
        "code": code,
        "reason": reason,
    }

    async def apply(session: Any, study: Study) -> None:
        study.updated_at = now()
        await add_event(session, study_id, "retry", data)

    await _with_study(state, study_id, apply)


async def _heartbeat(state: GatewayState, study_id: str) -> None:
    """Keep the relay's lease (the study's ``updated_at``) fresh while bc_service works."""
    period = max(0.2, state.settings.relay_lease_s / 3)
    while True:
        await asyncio.sleep(period)
        with contextlib.suppress(Exception):
            async with state.sessions() as session:
                await session.execute(
                    update(Study)
                    .where(Study.id == study_id, Study.status.in_(ACTIVE))
                    .values(updated_at=now())
                )
                await session.commit()


async def _release(state: GatewayState, study_id: str) -> None:
    """On shutdown: expire the lease at once so that a peer replica adopts the study."""
    expired = now() - timedelta(seconds=state.settings.relay_lease_s + 1)
    with contextlib.suppress(Exception):
        async with state.sessions() as session:
            await session.execute(
                update(Study)
                .where(Study.id == study_id, Study.status.in_(ACTIVE))
                .values(updated_at=expired)
            )
            await session.commit()


async def relay_exam(
    state: GatewayState, study_id: str, resp: httpx.Response | None, attempt: int = 1
) -> None:
    """Run the exam to a terminal state: relay the upstream stream, and when bc_service is lost
    mid-exam (connection error, stream cut, 5xx, overloaded) submit it again from the stored
    images, up to ``exam_attempts`` in all. A 4xx from bc_service fails at once."""
    beat = asyncio.create_task(_heartbeat(state, study_id))
    try:
        while True:
            outcome: Outcome
            if resp is None:
                try:
                    resp = await _resubmit(state, study_id)
                except UpstreamError as exc:
                    if exc.status_code < 500 and exc.status_code != 429:
                        await _fail(state, study_id, exc.code, exc.message, exc.details)
                        return
                    outcome = exc.code, exc.message, {**exc.details, "upstream": "bc_service"}
                except ServiceUnavailable as exc:
                    outcome = (*_LOST, {**exc.details, "reason": "unreachable"})
            if resp is not None:
                current, resp = resp, None
                outcome = await _consume(state, study_id, current)
            if outcome is None:
                return
            code, message, details = outcome
            if attempt >= state.settings.exam_attempts:
                await _fail(state, study_id, code, message, {**details, "attempts": attempt})
                return
            attempt += 1
            log.warning(
                "retrying exam",
                extra={"study_id": study_id, "attempt": attempt, "error": code},
            )
            await _record_retry(state, study_id, attempt, code, str(details.get("reason", code)))
            await asyncio.sleep(state.settings.exam_retry_backoff_s * (attempt - 1))
    except _Gone:
        log.info("study deleted during relay", extra={"study_id": study_id})
    except ValidationError:
        await _fail(
            state,
            study_id,
            "processing_failed",
            "The mammography service returned a malformed result.",
            {"upstream": "bc_service"},
        )
    except asyncio.CancelledError:
        # Graceful shutdown: leave the study running for a peer replica to adopt.
        beat.cancel()
        await asyncio.shield(_release(state, study_id))
        raise
    except Exception:
        log.exception("relay failed", extra={"study_id": study_id})
        await _fail(state, study_id, "processing_failed", "The mammography relay failed.", {})
    finally:
        beat.cancel()
        if resp is not None:
            await resp.aclose()


def start_relay(
    state: GatewayState, study_id: str, resp: httpx.Response | None, attempt: int = 1
) -> None:
    task = asyncio.create_task(relay_exam(state, study_id, resp, attempt), name=f"relay-{study_id}")
    state.relays.add(task)
    task.add_done_callback(state.relays.discard)


async def _adopt(state: GatewayState, study_id: str, cutoff: datetime) -> None:
    """Claim one study whose relay lost its lease; the replica whose UPDATE matches wins."""
    async with state.sessions() as session:
        claimed = await session.execute(
            update(Study)
            .where(
                Study.id == study_id,
                Study.status.in_(ACTIVE),
                Study.updated_at < cutoff,
            )
            .values(updated_at=now())
        )
        await session.commit()
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return
        retries = await session.scalar(
            select(func.count())
            .select_from(StudyEvent)
            .where(StudyEvent.study_id == study_id, StudyEvent.event == "retry")
        )
    lost = int(retries or 0) + 1  # the attempt whose relay went away
    log.warning("adopting exam", extra={"study_id": study_id, "attempt": lost + 1})
    if lost >= state.settings.exam_attempts:
        await _fail(
            state,
            study_id,
            "service_unavailable",
            "The analysis stopped reporting progress and was abandoned; please upload again.",
            {"reason": "stale", "attempts": lost},
        )
        return
    await _record_retry(state, study_id, lost + 1, "service_unavailable", "relay_lost")
    start_relay(state, study_id, None, lost + 1)


async def sweep_once(state: GatewayState) -> None:
    """Adopt mammography studies whose relay's lease expired (its replica stopped or died);
    fail those silent for longer than ``relay_stale_s``."""
    ts = now()
    cutoff = ts - timedelta(seconds=state.settings.relay_lease_s)
    mine = {t.get_name().removeprefix("relay-") for t in state.relays}
    async with state.sessions() as session:
        rows = (
            await session.execute(
                select(Study.id, Study.updated_at)
                .where(
                    Study.kind == "mammography",
                    Study.status.in_(ACTIVE),
                    Study.updated_at < cutoff,
                )
                .order_by(Study.updated_at)
                .limit(20)
            )
        ).all()
    for study_id, updated_at in rows:
        if study_id in mine:
            continue
        if ts - updated_at > timedelta(seconds=state.settings.relay_stale_s):
            async with state.sessions() as session:
                study = await session.get(Study, study_id)
                if study is not None:
                    await expire_if_stale(state, session, study)
            continue
        await _adopt(state, study_id, cutoff)


async def sweeper(state: GatewayState) -> None:
    while True:
        await asyncio.sleep(state.settings.relay_sweep_s)
        try:
            await sweep_once(state)
        except Exception:
            log.warning("relay sweep failed", exc_info=True)


async def stop_relays(state: GatewayState, wait_s: float = 5.0) -> None:
    tasks = list(state.relays)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=wait_s)
