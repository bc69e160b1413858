"""Mammography relay: reads bc_service's SSE stream (submitted in stream mode) and persists
every progress event and the final result (through :mod:`gateway.study_writes`) as they arrive.

The relay runs as a background task owned by the replica that accepted the upload; it keeps
going whether or not a client listens. Clients read ``/v1/studies/{id}/events`` from the
database, so any replica serves them. If bc_service is lost mid-exam (it died, restarted, was
overloaded or answered 5xx), the relay waits for its ``/v2/health/ready`` (backoff between
checks) and submits the exam again from the stored images, a ``retry`` event each time, for up
to ``exam_retry_window_s`` after the loss; ``exam_attempts`` bounds the submissions that
bc_service accepted and then lost (an exam that itself crashes the service). A relay keeps a
lease (the study's ``updated_at``, refreshed every ``relay_lease_s / 3``); every replica
sweeps for studies whose lease expired (their replica stopped or died), claims each with one
conditional UPDATE and restarts its relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import ValidationError
from sqlalchemy import select, update

from gateway.models import Study
from gateway.state import GatewayState
from gateway.studies import expire_if_stale
from gateway.study_writes import (
    StudyGone,
    fail,
    finish_mammography,
    record_progress,
    record_retry,
    record_upstream_id,
    run_events,
    stored_images,
)
from gateway.upstream import UpstreamError, iter_sse, status_for_code
from shared.clock import now
from shared.contracts.mammo import Exam, ProgressEvent
from shared.errors import ServiceUnavailable

log = logging.getLogger("irmi.gateway.relay")


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
                await record_progress(state, study_id, progress)
            elif ev.event in {"result", "error"}:
                if ev.event == "result":
                    exam = Exam.model_validate(data)
                    if exam.status == "succeeded" and exam.result is not None:
                        await finish_mammography(state, study_id, exam)
                        return None
                    code, message, details = error_of(exam.error or {})
                else:
                    code, message, details = error_of(data)
                if _retryable(code):
                    return code, message, {**details, "upstream": "bc_service"}
                await fail(state, study_id, code, message, details)
                return None
            elif isinstance(data, dict) and isinstance(data.get("id"), str):
                await record_upstream_id(state, study_id, data["id"])
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


async def _submit(state: GatewayState, study_id: str) -> httpx.Response | Outcome:
    """Submit the exam again from the stored images (tags as uploaded, de-identified copies):
    the stream, or the error that kept bc_service from accepting it."""
    images = await stored_images(state, study_id)
    try:
        return await state.upstreams.open_exam_stream([img.part() for img in images])
    except UpstreamError as exc:
        if exc.status_code < 500 and exc.status_code != 429:
            await fail(state, study_id, exc.code, exc.message, exc.details)
            return None
        return exc.code, exc.message, {**exc.details, "upstream": "bc_service"}
    except ServiceUnavailable as exc:
        return (*_LOST, {**exc.details, "reason": "unreachable"})


async def _wait_ready(state: GatewayState, deadline: float) -> bool:
    """Wait (backoff between checks) until bc_service reports ready; False past ``deadline``."""
    settings = state.settings
    pause = settings.exam_retry_backoff_s
    while True:
        await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        if await state.upstreams.ready(state.upstreams.bc):
            return True
        if time.monotonic() >= deadline:
            return False
        pause = min(max(pause * 2, 0.1), settings.exam_retry_backoff_max_s)


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
    """Run the exam to a terminal state: relay the upstream stream (``resp``; None: submit
    it from the stored images first, as submission ``attempt``), and when bc_service is lost
    mid-exam wait for it to be ready and submit again, within ``exam_retry_window_s`` of the
    loss and up to ``exam_attempts`` accepted submissions. A 4xx fails at once."""
    settings = state.settings
    beat = asyncio.create_task(_heartbeat(state, study_id))
    lost_at: float | None = None  # when bc_service last lost the exam (monotonic)
    try:
        while True:
            outcome: Outcome
            accepted = False
            if resp is None:
                submitted = await _submit(state, study_id)
                if isinstance(submitted, httpx.Response):
                    resp = submitted
                elif submitted is None:
                    return
                else:
                    outcome = submitted
            if resp is not None:
                current, resp = resp, None
                accepted = True
                outcome = await _consume(state, study_id, current)
            if outcome is None:
                return
            code, message, details = outcome
            if accepted or lost_at is None:  # the window runs from the latest loss
                lost_at = time.monotonic()
            deadline = lost_at + settings.exam_retry_window_s
            spent = {"attempts": attempt, "window_s": settings.exam_retry_window_s}
            if (accepted and attempt >= settings.exam_attempts) or time.monotonic() >= deadline:
                await fail(state, study_id, code, message, {**details, **spent})
                return
            if not await _wait_ready(state, deadline):
                await fail(state, study_id, code, message, {**details, **spent, "ready": False})
                return
            attempt += 1 if accepted else 0
            log.warning(
                "retrying exam",
                extra={"study_id": study_id, "attempt": attempt, "error": code},
            )
            await record_retry(
                state,
                study_id,
                {
                    "attempt": attempt,
                    "max_attempts": settings.exam_attempts,
                    "code": code,
                    "reason": str(details.get("reason", code)),
                    "window_s": settings.exam_retry_window_s,
                },
            )
    except StudyGone:
        log.info("study deleted during relay", extra={"study_id": study_id})
    except ValidationError:
        await fail(
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
        await fail(state, study_id, "processing_failed", "The mammography relay failed.", {})
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
        _, retries = await run_events(session, study_id)
    lost = len(retries) + 1  # the attempt whose relay went away
    log.warning("adopting exam", extra={"study_id": study_id, "attempt": lost + 1})
    if lost >= state.settings.exam_attempts:
        await fail(
            state,
            study_id,
            "service_unavailable",
            "The analysis stopped reporting progress and was abandoned; please upload again.",
            {"reason": "stale", "attempts": lost},
        )
        return
    retry = {
        "attempt": lost + 1,
        "max_attempts": state.settings.exam_attempts,
        "code": "service_unavailable",
        "reason": "relay_lost",
        "window_s": state.settings.exam_retry_window_s,
    }
    try:
        await record_retry(state, study_id, retry)
    except StudyGone:
        return
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
