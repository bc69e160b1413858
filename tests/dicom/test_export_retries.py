"""Result exports are retried a bounded number of times: against a destination that stays
down, an export is sent ``dicom_export_attempts`` times (each attempt and its error recorded,
the next one after the backoff), then marked failed and never sent again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from gateway.db import create_engine, migrate, session_factory
from gateway.dicom_export import send_due
from gateway.dicom_tables import DicomExport, DicomStudy
from gateway.models import User
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.store import create_store
from gateway.streams import StreamHub
from gateway.upstream import Upstreams
from shared.clock import now
from shared.imaging import encode_dicom
from tests.procs import free_port


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[GatewayState]:
    settings = Settings(
        dev_mode=True,
        jwt_secret="t" * 48,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}",
        store_dir=tmp_path / "images",
        dicom_dest="dimse",
        dicom_dest_port=free_port(),  # nobody listens there
        dicom_timeout_s=2,
        dicom_export_attempts=3,
        dicom_export_backoff_s=60,
    )
    engine = create_engine(settings.database_url)
    await migrate(engine)
    sessions = session_factory(engine)
    gw = GatewayState(
        settings=settings,
        engine=engine,
        sessions=sessions,
        store=create_store(settings),
        upstreams=Upstreams(settings),
        streams=StreamHub(settings, sessions),
    )
    try:
        yield gw
    finally:
        await gw.upstreams.close()
        await engine.dispose()


async def _export(state: GatewayState) -> str:
    key = await state.store.put(encode_dicom(np.zeros((8, 8), np.uint8)))
    async with state.sessions() as session:
        user = User(email="pacs@x.org", password_hash="-", role="integration", full_name="PACS")
        session.add(user)
        await session.flush()
        study = DicomStudy(study_uid="1.2.3", account_id=user.id, source="T", status="done")
        session.add(study)
        await session.flush()
        export = DicomExport(
            dicom_study_id=study.id,
            study_id="s1",
            kind="sr",
            study_uid="1.2.3",
            sop_instance_uid="1.2.3.4",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.88.33",
            blob_key=key,
            destination="dimse://PACS@127.0.0.1",
            status="pending",
            attempts=0,
        )
        session.add(export)
        await session.commit()
        return export.id


async def _row(state: GatewayState, export_id: str) -> DicomExport:
    async with state.sessions() as session:
        row = await session.get(DicomExport, export_id)
        assert row is not None
        return row


async def test_a_destination_that_stays_down_fails_the_export_after_its_attempts(
    state: GatewayState,
) -> None:
    export_id = await _export(state)
    for attempt in (1, 2):
        await send_due(state)
        row = await _row(state, export_id)
        assert (row.status, row.attempts) == ("pending", attempt)
        assert row.last_error and "association" in row.last_error
        assert row.next_attempt_at > now() + timedelta(seconds=50)  # the backoff
        await send_due(state)  # not due yet: nothing sent
        assert (await _row(state, export_id)).attempts == attempt
        async with state.sessions() as session:  # let the backoff pass
            await session.execute(
                update(DicomExport).values(next_attempt_at=now() - timedelta(seconds=1))
            )
            await session.commit()
    await send_due(state)
    row = await _row(state, export_id)
    assert (row.status, row.attempts) == ("failed", 3)
    await send_due(state)
    assert (await _row(state, export_id)).attempts == 3  # never again
