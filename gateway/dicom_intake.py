"""Receiving one DICOM instance (from STOW-RS, which the DICOM node's C-STORE goes through):
read its header, store it durably, and add it to its study's open assembly.

"Stored" means what a C-STORE success promises: the file is in the image store (written and
fsynced on local disk, or acknowledged by the object store) and its row committed, before the
caller hears success. An instance sent again (the same SOP Instance UID: a PACS retrying after
a lost answer) is acknowledged without being stored twice.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from gateway.dicom_tables import DicomInstance, DicomStudy
from gateway.models import User
from gateway.state import GatewayState
from shared.clock import now

# Failure reasons of PS3.18 / PS3.4 (STOW-RS FailureReason, C-STORE status).
CANNOT_UNDERSTAND = 0xC000
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
PROCESSING_FAILURE = 0x0110
RECEIVING = "receiving"
_ATTEMPTS = 5


@dataclass(frozen=True)
class Header:
    """What the intake needs of an instance (read without its pixel data)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str


@dataclass(frozen=True)
class Outcome:
    """One instance's answer: stored (or already stored), or refused with a failure reason."""

    sop_class_uid: str
    sop_instance_uid: str
    failure: int | None = None
    reason: str = ""
    study_uid: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None


class Refused(Exception):
    def __init__(self, failure: int, reason: str, header: Header | None = None) -> None:
        super().__init__(reason)
        self.failure, self.reason, self.header = failure, reason, header


def read_header(data: bytes) -> Header:
    """The instance's UIDs; :class:`Refused` when it is no DICOM image IRMI can keep."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data), defer_size="4 KB")
        header = Header(
            sop_class_uid=str(ds.SOPClassUID),
            sop_instance_uid=str(ds.SOPInstanceUID),
            study_uid=str(ds.StudyInstanceUID),
            series_uid=str(ds.SeriesInstanceUID),
        )
    except (InvalidDicomError, AttributeError, ValueError, EOFError, OSError) as exc:
        raise Refused(CANNOT_UNDERSTAND, f"not a readable DICOM instance ({exc})"[:200]) from None
    if not all((header.sop_instance_uid, header.study_uid, header.series_uid)):
        raise Refused(CANNOT_UNDERSTAND, "the instance lacks its study, series or SOP UID")
    if "PixelData" not in ds:
        raise Refused(SOP_CLASS_NOT_SUPPORTED, "not an image (no pixel data)", header)
    return header


async def receive(state: GatewayState, account: User, source: str, data: bytes) -> Outcome:
    """Store one instance for ``account`` (``source``: the calling AE title, or stow-rs)."""
    try:
        header = await asyncio.to_thread(read_header, data)
    except Refused as exc:
        h = exc.header
        return Outcome(
            h.sop_class_uid if h else "", h.sop_instance_uid if h else "", exc.failure, exc.reason
        )
    ok = Outcome(header.sop_class_uid, header.sop_instance_uid, study_uid=header.study_uid)
    if await _known(state, header.sop_instance_uid):
        return ok
    key = await state.store.put(data)  # durable before any row points at it
    for _ in range(_ATTEMPTS):
        try:
            if await _add(state, account, source, header, key, len(data)):
                return ok
        except IntegrityError:
            # The same instance arrived twice at once, or another request opened the
            # study's assembly first: look again.
            if await _known(state, header.sop_instance_uid):
                return ok
    return Outcome(
        header.sop_class_uid,
        header.sop_instance_uid,
        PROCESSING_FAILURE,
        "the study kept changing while the instance was added; send it again",
    )


async def _known(state: GatewayState, sop_instance_uid: str) -> bool:
    async with state.sessions() as session:
        found = await session.scalar(
            select(DicomInstance.id).where(DicomInstance.sop_instance_uid == sop_instance_uid)
        )
    return found is not None


async def _add(
    state: GatewayState, account: User, source: str, header: Header, key: str, size: int
) -> bool:
    """Add the instance to its study's open assembly in one transaction (opening one if
    there is none); False when the assembly closed meanwhile (the caller tries again)."""
    async with state.sessions() as session:
        study = await session.scalar(
            select(DicomStudy).where(DicomStudy.open_uid == header.study_uid)
        )
        ts = now()
        if study is None:
            study = DicomStudy(
                study_uid=header.study_uid,
                open_uid=header.study_uid,
                account_id=account.id,
                source=source[:64],
                status=RECEIVING,
                instances=0,
                created_at=ts,
                last_received_at=ts,
            )
            session.add(study)
            await session.flush()
        # Conditional: the worker may have closed the assembly since it was read.
        joined = await session.execute(
            update(DicomStudy)
            .where(DicomStudy.id == study.id, DicomStudy.status == RECEIVING)
            .values(instances=DicomStudy.instances + 1, last_received_at=ts)
        )
        if joined.rowcount != 1:  # type: ignore[attr-defined]
            await session.rollback()
            return False
        session.add(
            DicomInstance(
                dicom_study_id=study.id,
                sop_instance_uid=header.sop_instance_uid,
                sop_class_uid=header.sop_class_uid,
                series_uid=header.series_uid,
                blob_key=key,
                size=size,
                received_at=ts,
            )
        )
        await session.commit()
    return True
