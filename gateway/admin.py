"""Operator commands: ``python -m gateway.admin <command>``, against the gateway's database
(``IRMI_GATEWAY_DATABASE_URL``; migrated first).

- ``create-admin --email E [--full-name N] [--password-stdin]``: an administrator account (the
  only way one is made: sign-up never creates admins). The password comes from one line on
  standard input with ``--password-stdin``, else from ``IRMI_ADMIN_PASSWORD``, else from a
  prompt (asked twice); never from the command line, where ``ps`` and shell history see it.
- ``create-integration --email E [--name N]``: the integration account of a PACS (studies
  received over DICOM belong to it; see :mod:`gateway.integration`); prints its API key once.
- ``purge-records [--dry-run]``: delete the consultations of studies deleted more than
  ``record_retention_days`` ago and the audit rows older than that.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from gateway.db import create_engine, migrate, session_factory
from gateway.models import AuditEvent, Consultation, User
from gateway.schemas import LoginRequest
from gateway.security import check_password_rules, hash_password
from gateway.settings import Settings, load_or_exit
from shared.clock import now
from shared.errors import ValidationFailed

PASSWORD_ENV = "IRMI_ADMIN_PASSWORD"  # noqa: S105 - the variable's name, not a password


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise SystemExit(
            f"no password: use --password-stdin, set {PASSWORD_ENV}, or run in a terminal"
        )
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise SystemExit("the passwords differ")
    return first


async def create_admin(settings: Settings, email: str, full_name: str, password: str) -> str:
    engine = create_engine(settings.database_url, settings.database_echo)
    try:
        await migrate(engine)
        async with session_factory(engine)() as session:
            user = User(
                email=email,
                password_hash=hash_password(password),
                role="admin",
                full_name=full_name,
            )
            session.add(user)
            try:
                await session.commit()
            except IntegrityError:
                raise SystemExit("an account with this e-mail already exists") from None
            return user.id
    finally:
        await engine.dispose()


async def purge_records(settings: Settings, dry_run: bool) -> tuple[int, int]:
    cutoff = now() - timedelta(days=settings.record_retention_days)
    old_consultations = Consultation.study_deleted_at < cutoff
    old_audit = AuditEvent.at < cutoff
    engine = create_engine(settings.database_url, settings.database_echo)
    try:
        await migrate(engine)
        async with session_factory(engine)() as session:
            counts = (
                await session.scalar(
                    select(func.count()).select_from(Consultation).where(old_consultations)
                ),
                await session.scalar(select(func.count()).select_from(AuditEvent).where(old_audit)),
            )
            if not dry_run:
                await session.execute(delete(Consultation).where(old_consultations))
                await session.execute(delete(AuditEvent).where(old_audit))
                await session.commit()
            return int(counts[0] or 0), int(counts[1] or 0)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.admin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("create-admin", help="create an administrator account")
    make.add_argument("--email", required=True)
    make.add_argument("--full-name", default="Administrator")
    make.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    integ = sub.add_parser("create-integration", help="create a PACS integration account")
    integ.add_argument("--email", required=True)
    integ.add_argument("--name", default="PACS")
    purge = sub.add_parser("purge-records", help="apply the retention period")
    purge.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    settings = load_or_exit("gateway.admin")
    if args.command == "create-admin":
        try:
            email = LoginRequest(email=args.email, password="-").email  # noqa: S106
        except ValueError:
            raise SystemExit(f"not an e-mail address: {args.email!r}") from None
        password = read_password(args.password_stdin)
        try:
            check_password_rules(password, email, settings.password_min_length)
        except ValidationFailed as exc:
            raise SystemExit(exc.message) from None
        user_id = asyncio.run(create_admin(settings, email, args.full_name.strip(), password))
        print(f"admin account created: {email} (id {user_id})")
        return 0
    if args.command == "create-integration":
        return _create_integration(settings, args.email, args.name.strip())
    consultations, audit_rows = asyncio.run(purge_records(settings, args.dry_run))
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb} {consultations} consultations of deleted studies and {audit_rows} audit rows "
        f"older than {settings.record_retention_days} days"
    )
    return 0


def _create_integration(settings: Settings, email: str, name: str) -> int:
    from gateway.integration import create_integration

    try:
        email = LoginRequest(email=email, password="-").email  # noqa: S106
    except ValueError:
        raise SystemExit(f"not an e-mail address: {email!r}") from None
    user_id, key = asyncio.run(create_integration(settings, email, name or "PACS"))
    print(f"integration account created: {email} (id {user_id})")
    print(f"API key (shown once; IRMI_DICOM_API_KEY of the DICOM node): {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
