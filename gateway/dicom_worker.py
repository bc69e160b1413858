"""The DICOM worker: one loop per gateway replica, every ``dicom_poll_s``. It

1. claims received studies quiet for ``dicom_quiet_s`` (one conditional UPDATE: of several
   replicas one wins; the assembly closes, later instances open a new one) and analyses them
   (:mod:`gateway.dicom_analysis`), a few at a time;
2. claims again those whose analysis never recorded its IRMI study (the replica died);
3. closes those whose IRMI study ended: results built and queued (:mod:`gateway.dicom_export`)
   when it succeeded, ``failed`` with the study's error otherwise;
4. sends the due exports.

All of its state is in the database, so a gateway restart resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import and_, or_, select, update

from gateway.dicom_analysis import analyse
from gateway.dicom_export import build_exports, send_due
from gateway.dicom_tables import DicomStudy
from gateway.models import Study
from gateway.state import GatewayState
from shared.clock import now

log = logging.getLogger("irmi.gateway.dicom")
BATCH = 8
PARALLEL = 4


async def _claim(state: GatewayState, dicom_study_id: str) -> bool:
    ts = now()
    quiet = ts - timedelta(seconds=state.settings.dicom_quiet_s)
    stale = ts - timedelta(seconds=state.settings.dicom_lease_s)
    async with state.sessions() as session:
        claimed = await session.execute(
            update(DicomStudy)
            .where(
                DicomStudy.id == dicom_study_id,
                or_(
                    and_(DicomStudy.status == "receiving", DicomStudy.last_received_at < quiet),
                    and_(
                        DicomStudy.status == "analysing",
                        DicomStudy.study_id.is_(None),
                        DicomStudy.claimed_at < stale,
                    ),
                ),
            )
            .values(status="analysing", open_uid=None, claimed_at=ts)
        )
        await session.commit()
    return bool(claimed.rowcount == 1)  # type: ignore[attr-defined]


async def claim_and_analyse(state: GatewayState) -> None:
    ts = now()
    quiet = ts - timedelta(seconds=state.settings.dicom_quiet_s)
    stale = ts - timedelta(seconds=state.settings.dicom_lease_s)
    async with state.sessions() as session:
        ready = list(
            await session.scalars(
                select(DicomStudy.id)
                .where(
                    or_(
                        and_(DicomStudy.status == "receiving", DicomStudy.last_received_at < quiet),
                        and_(
                            DicomStudy.status == "analysing",
                            DicomStudy.study_id.is_(None),
                            DicomStudy.claimed_at < stale,
                        ),
                    )
                )
                .order_by(DicomStudy.last_received_at)
                .limit(BATCH)
            )
        )
    gate = asyncio.Semaphore(PARALLEL)

    async def one(dicom_study_id: str) -> None:
        async with gate:
            if not await _claim(state, dicom_study_id):
                return
            try:
                await analyse(state, dicom_study_id)
            except Exception:
                log.exception("dicom analysis crashed", extra={"dicom_study_id": dicom_study_id})

    await asyncio.gather(*(one(i) for i in ready))


async def close_finished(state: GatewayState) -> None:
    async with state.sessions() as session:
        rows = (
            await session.execute(
                select(DicomStudy.id, Study.status, Study.error)
                .join(Study, Study.id == DicomStudy.study_id)
                .where(DicomStudy.status == "analysing", Study.status.in_(("succeeded", "failed")))
                .limit(BATCH)
            )
        ).all()
    for dicom_study_id, status, error in rows:
        if status == "succeeded":
            await build_exports(state, dicom_study_id)
            continue
        async with state.sessions() as session:
            await session.execute(
                update(DicomStudy)
                .where(DicomStudy.id == dicom_study_id, DicomStudy.status == "analysing")
                .values(status="failed", reason=error, finished_at=now())
            )
            await session.commit()


async def tick(state: GatewayState) -> None:
    await claim_and_analyse(state)
    await close_finished(state)
    await send_due(state)


async def worker(state: GatewayState) -> None:
    # After a (re)start, one quiet period first: instances that a sender retries after this
    # replica's downtime still join their study instead of finding it analysed without them.
    await asyncio.sleep(state.settings.dicom_quiet_s)
    while True:
        await asyncio.sleep(state.settings.dicom_poll_s)
        try:
            await tick(state)
        except Exception:
            log.warning("dicom worker pass failed", exc_info=True)
