"""The integration account: the PACS's identity at IRMI. Studies received over DICOM belong to
it (never to a patient account: matching a DICOM patient to an IRMI patient could show images
to the wrong person) and are shared with the doctors named in ``dicom_share_with``, who read
them while verified (:mod:`gateway.sharing`). The account cannot log in; its API key (scope
``studies``), made once by ``python -m gateway.admin create-integration``, is what the DICOM
node (or any STOW-RS client) sends.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db import create_engine, migrate, session_factory
from gateway.deps import Principal
from gateway.models import ApiKey, Consultation, User
from gateway.security import hash_password, new_api_key
from gateway.settings import Settings
from shared.errors import Forbidden

ROLE = "integration"


def integration_account(settings: Settings, principal: Principal) -> User:
    """The caller, if it is the configured integration account; else 403."""
    user = principal.user
    configured = (settings.dicom_account or "").strip().lower()
    if not configured:
        raise Forbidden(
            "DICOM intake is not configured (IRMI_GATEWAY_DICOM_ACCOUNT).",
            details={"reason": "dicom_intake_off"},
        )
    if user.role != ROLE or user.email.lower() != configured:
        raise Forbidden(
            "Only the configured integration account may send DICOM instances.",
            details={"required_role": ROLE},
        )
    return user


async def share_received(
    session: AsyncSession, settings: Settings, account: User, study_id: str, kind: str, source: str
) -> int:
    """Share a received study with the configured doctors (added to ``session``); the count."""
    emails = [e.strip().lower() for e in settings.dicom_share_with if e.strip()]
    if not emails:
        return 0
    doctors = list(
        await session.scalars(select(User).where(User.email.in_(emails), User.role == "doctor"))
    )
    for doctor in doctors:
        session.add(
            Consultation(
                study_id=study_id,
                study_kind=kind,
                patient_id=account.id,
                doctor_id=doctor.id,
                question=f"Received over DICOM from {source}: please review IRMI's result.",
            )
        )
    return len(doctors)


async def create_integration(settings: Settings, email: str, name: str) -> tuple[str, str]:
    """A new integration account and its API key: (account id, the key, shown once)."""
    engine = create_engine(settings.database_url, settings.database_echo)
    try:
        await migrate(engine)
        async with session_factory(engine)() as session:
            user = User(
                email=email,
                # No one knows this password: the account authenticates by its API key only.
                password_hash=hash_password(secrets.token_urlsafe(32)),
                role=ROLE,
                full_name=name,
            )
            session.add(user)
            try:
                await session.flush()
            except IntegrityError:
                raise SystemExit("an account with this e-mail already exists") from None
            key, prefix, digest = new_api_key()
            session.add(
                ApiKey(
                    user_id=user.id,
                    name=f"{name} (DICOM)"[:100],
                    prefix=prefix,
                    key_hash=digest,
                    scopes=["studies"],
                )
            )
            await session.commit()
            return user.id, key
    finally:
        await engine.dispose()
