"""Mammography relay: reads bc_service's SSE stream (submitted in stream mode) and persists
every progress event and the final result in the gateway's database as they arrive.

The relay runs as a background task owned by the replica that accepted the upload; it keeps
going whether or not a client listens. Clients read ``/v1/studies/{id}/events`` from the
database, so any replica serves them. If bc_service dies mid-exam, the study ends ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx
from pydantic import ValidationError

from gateway.models import Study, StudyFile
from gateway.schemas import ExamResultPublic, FileRef
from gateway.state import GatewayState
from gateway.studies import add_event, decode_png_b64, fail_study, heatmap_url, now
from gateway.upstream import iter_sse
from shared.contracts.mammo import Exam, ProgressEvent

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


def _error_of(data: Any) -> tuple[str, str, dict[str, Any]]:
    err = data.get("error", data) if isinstance(data, dict) else {}
    if not isinstance(err, dict):
        err = {}
    details = err.get("details") if isinstance(err.get("details"), dict) else {}
    return (
        str(err.get("code") or "processing_failed"),
        str(err.get("message") or "The mammography analysis failed."),
        details or {},
    )


async def relay_exam(state: GatewayState, study_id: str, resp: httpx.Response) -> None:
    """Consume the upstream stream to its end; the study always ends terminal."""
    finished = False
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
            elif ev.event == "result":
                exam = Exam.model_validate(data)
                if exam.status == "succeeded" and exam.result is not None:
                    await _store_result(state, study_id, exam)
                else:
                    code, message, details = _error_of(exam.error or {})
                    await _fail(state, study_id, code, message, details)
                finished = True
                break
            elif ev.event == "error":
                code, message, details = _error_of(data)
                await _fail(state, study_id, code, message, details)
                finished = True
                break
            elif isinstance(data, dict) and isinstance(data.get("id"), str):
                await _on_upstream_id(state, study_id, data["id"])
        if not finished:
            await _fail(
                state,
                study_id,
                "service_unavailable",
                "The mammography service stopped before finishing (it may have restarted); "
                "please upload the exam again.",
                {"upstream": "bc_service", "reason": "stream_ended"},
            )
    except _Gone:
        log.info("study deleted during relay", extra={"study_id": study_id})
    except (httpx.HTTPError, ValidationError) as exc:
        reason = "timeout" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
        await _fail(
            state,
            study_id,
            "service_unavailable" if isinstance(exc, httpx.HTTPError) else "processing_failed",
            "Lost the connection to the mammography service mid-exam; please upload again."
            if isinstance(exc, httpx.HTTPError)
            else "The mammography service returned a malformed result.",
            {"upstream": "bc_service", "reason": reason},
        )
    except asyncio.CancelledError:
        await asyncio.shield(
            _fail(
                state,
                study_id,
                "service_unavailable",
                "The gateway stopped while the exam was running; please upload again.",
                {"reason": "gateway_shutdown"},
            )
        )
        raise
    except Exception:
        log.exception("relay failed", extra={"study_id": study_id})
        await _fail(state, study_id, "processing_failed", "The mammography relay failed.", {})
    finally:
        await resp.aclose()


def start_relay(state: GatewayState, study_id: str, resp: httpx.Response) -> None:
    task = asyncio.create_task(relay_exam(state, study_id, resp), name=f"relay-{study_id}")
    state.relays.add(task)
    task.add_done_callback(state.relays.discard)


async def stop_relays(state: GatewayState, wait_s: float = 5.0) -> None:
    tasks = list(state.relays)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=wait_s)
