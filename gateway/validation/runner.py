"""The background work of validation runs, one task per gateway replica: claim a queued run
(a lease in the database, so two replicas never score one run and a replica that died is
taken over), score its pending units through :class:`~gateway.validation.scoring.Scorer`,
store the figures and progress as they come, then the report; and delete the images of runs
whose retention has passed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update

from gateway.models import StudyFile
from gateway.state import GatewayState
from gateway.validation import report as rpt
from gateway.validation.report_schemas import ValidationReport
from gateway.validation.scoring import Scorer
from gateway.validation.site import active, applies
from gateway.validation.tables import ValidationItem, ValidationRun
from shared.clock import now
from shared.contracts.common import ModelRef

log = logging.getLogger("irmi.gateway.validation")

# Run images are stored behind this prefix, so their (content-addressed) blobs are never the
# blobs of a study: deleting a study never takes a run's image, nor a run a study's.
RUN_BLOB = b"IRMI-VALIDATION-RUN-IMAGE\n"
POLL_S = 1.0
LEASE_S = 60.0
PURGE_EVERY_S = 10.0  # one indexed query: cheap


async def claim(state: GatewayState) -> str | None:
    """A queued run (or a running one whose lease lapsed), leased to this replica."""
    t = now()
    async with state.sessions() as session:
        run_id = await session.scalar(
            select(ValidationRun.id)
            .where(
                or_(
                    ValidationRun.status == "queued",
                    (ValidationRun.status == "running") & (ValidationRun.lease_until < t),
                )
            )
            .order_by(ValidationRun.updated_at)
            .limit(1)
        )
        if run_id is None:
            return None
        took = await session.execute(
            update(ValidationRun)
            .where(
                ValidationRun.id == run_id,
                or_(ValidationRun.status == "queued", ValidationRun.lease_until < t),
            )
            .values(status="running", lease_until=t + timedelta(seconds=LEASE_S), updated_at=t)
        )
        await session.commit()
        return run_id if took.rowcount == 1 else None  # type: ignore[attr-defined]


async def _score_item(
    state: GatewayState, scorer: Scorer, run: ValidationRun, item_id: str
) -> None:
    async with state.sessions() as session:
        item = await session.get(ValidationItem, item_id)
        if item is None or item.status != "pending":
            return
        blobs = list(item.blobs)
    images: list[tuple[bytes, str]] = []
    try:
        for b in blobs:
            images.append((_unwrap(await state.store.get(b["key"])), b["media_type"]))
    except Exception:  # the image was purged or lost: the unit cannot be scored
        images = []
    scored = await scorer.score(run.modality, images) if images else None
    async with state.sessions() as session:
        item = await session.get(ValidationItem, item_id)
        if item is None:
            return
        if scored is None or scored.error_code is not None:
            item.status, item.error_code = "failed", scored.error_code if scored else "not_found"
        else:
            item.status = "scored"
            item.probability, item.score = scored.probability, scored.score
            item.outside_population = scored.outside_population
            item.reliability, item.model = scored.reliability, scored.model
            item.operating_point = scored.point
        await session.commit()


def _unwrap(blob: bytes) -> bytes:
    return blob[len(RUN_BLOB) :] if blob.startswith(RUN_BLOB) else blob


async def _progress(state: GatewayState, run_id: str) -> None:
    async with state.sessions() as session:
        counts = dict(
            (
                await session.execute(
                    select(ValidationItem.status, func.count())
                    .where(ValidationItem.run_id == run_id)
                    .group_by(ValidationItem.status)
                )
            ).all()
        )
        t = now()
        await session.execute(
            update(ValidationRun)
            .where(ValidationRun.id == run_id)
            .values(
                scored=int(counts.get("scored", 0)),
                failed=int(counts.get("failed", 0)),
                total=int(sum(counts.values())),
                updated_at=t,
                lease_until=t + timedelta(seconds=LEASE_S),
            )
        )
        await session.commit()


async def current_point(
    state: GatewayState,
    modality: str,
    model: dict[str, Any] | None,
    returned: dict[str, Any] | None,
    comparison: str | None = None,
) -> dict[str, Any] | None:
    """The point the run's films are read at now: the site's adopted point for this exact
    model (mammography: and for readings like the run's, ``comparison``), else the one the
    service returned with them (its card's)."""
    if model is None:
        return returned
    async with state.sessions() as session:
        adopted = await active(session, modality)
    if adopted is None or not applies(adopted, ModelRef.model_validate(model)):
        return returned
    if modality == "mammography" and (adopted.choice or {}).get("comparison") != comparison:
        return returned
    return adopted.point


async def build_report(state: GatewayState, run: ValidationRun) -> dict[str, Any]:
    async with state.sessions() as session:
        items = list(
            (
                await session.execute(select(ValidationItem).where(ValidationItem.run_id == run.id))
            ).scalars()
        )
    scored = [i for i in items if i.status == "scored" and i.score is not None]
    failures = dict(Counter(i.error_code or "unknown" for i in items if i.status == "failed"))
    models = [i.model for i in scored if i.model]
    model = models[0] if models else None
    returned = next((i.operating_point for i in scored if i.operating_point), None)
    comparison = next((str((i.reliability or {}).get("comparison")) for i in scored), None)
    point = await current_point(state, run.modality, model, returned, comparison)
    units = [
        rpt.Unit(
            label=i.label,
            probability=float(i.probability or 0.0),
            score=float(i.score or 0.0),
            outside=bool(i.outside_population),
            subgroups=dict(i.subgroups or {}),
            position=(i.reliability or {}).get("position"),
        )
        for i in scored
    ]
    s = state.settings
    limits = rpt.Limits(
        s.validation_min_positives, s.validation_sensitivity_floor, s.validation_auc_floor
    )
    body = await asyncio.to_thread(
        rpt.build, units, point, limits, modality=run.modality, failures=failures
    )
    mixed = len({tuple(sorted(m.items())) for m in models}) > 1
    if mixed:
        body["warnings"].append(
            "The films were scored by more than one model version: re-run before choosing."
        )
    full = {
        "run_id": run.id,
        "modality": run.modality,
        "target": run.target,
        "model": model,
        "generated_at": now().isoformat(),
        **body,
    }
    return ValidationReport.model_validate(full).model_dump(mode="json")


async def process(state: GatewayState, scorer: Scorer, run_id: str) -> None:
    async with state.sessions() as session:
        run = await session.get(ValidationRun, run_id)
        if run is None:
            return
        pending = list(
            (
                await session.execute(
                    select(ValidationItem.id)
                    .where(ValidationItem.run_id == run_id, ValidationItem.status == "pending")
                    .order_by(ValidationItem.position)
                )
            ).scalars()
        )
    log.info("validation run started", extra={"run_id": run_id, "pending": len(pending)})
    width = state.settings.validation_concurrency
    for start in range(0, len(pending), width):
        chunk = pending[start : start + width]
        await asyncio.gather(*(_score_item(state, scorer, run, i) for i in chunk))
        await _progress(state, run_id)
    await _progress(state, run_id)
    report: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    try:
        report = await build_report(state, run)
    except Exception:  # a report that cannot be built ends the run, saying so
        log.exception("validation report failed", extra={"run_id": run_id})
        error = {"code": "processing_failed", "message": "The report could not be built."}
    async with state.sessions() as session:
        fresh = await session.get(ValidationRun, run_id)
        if fresh is None:
            return
        fresh.report, fresh.error, fresh.lease_until = report, error, None
        fresh.status = "done" if report is not None else "failed"
        fresh.updated_at = now()
        await session.commit()
    log.info("validation run finished", extra={"run_id": run_id, "status": fresh.status})


async def delete_blobs(state: GatewayState, keys: set[str]) -> None:
    """Delete run images (held by no other run item: see :func:`_unused`); a study never holds
    one (see RUN_BLOB), which is checked all the same."""
    async with state.sessions() as session:
        for key in keys:
            in_study = await session.scalar(
                select(func.count()).select_from(StudyFile).where(StudyFile.blob_key == key)
            )
            if in_study:
                continue
            await state.store.delete(key)


async def purge_images(state: GatewayState, run_id: str | None = None) -> int:
    """Delete the images of runs past their retention (or of ``run_id`` now); the report and
    the per-image scores stay. Returns the number of runs purged."""
    t = now()
    async with state.sessions() as session:
        query = select(ValidationRun).where(ValidationRun.images_deleted_at.is_(None))
        query = (
            query.where(ValidationRun.id == run_id)
            if run_id
            else query.where(ValidationRun.retain_images_until < t)
        )
        runs = list((await session.execute(query)).scalars())
        keys: set[str] = set()
        for run in runs:
            items = (
                await session.execute(select(ValidationItem).where(ValidationItem.run_id == run.id))
            ).scalars()
            for item in items:
                keys.update(b["key"] for b in item.blobs)
                item.blobs = []
                if item.status == "pending":
                    item.status, item.error_code = "failed", "images_deleted"
            run.images_deleted_at = t
        await session.commit()
    await delete_blobs(state, await _unused(state, keys))
    return len(runs)


async def _unused(state: GatewayState, keys: set[str]) -> set[str]:
    """The keys no remaining run item holds."""
    if not keys:
        return set()
    held: set[str] = set()
    async with state.sessions() as session:
        for blobs in (await session.execute(select(ValidationItem.blobs))).scalars():
            held.update(b["key"] for b in blobs or [])
    return keys - held


async def run_forever(state: GatewayState) -> None:
    """The replica's validation task (started with the app)."""
    scorer = Scorer(state)
    last_purge = 0.0
    loop = asyncio.get_running_loop()
    while True:
        try:
            run_id = await claim(state)
            if run_id is not None:
                await process(state, scorer, run_id)
                continue
            if loop.time() - last_purge > PURGE_EVERY_S:
                last_purge = loop.time()
                await purge_images(state)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("validation task error; retrying")
        await asyncio.sleep(POLL_S)


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
