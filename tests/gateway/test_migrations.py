"""Migrations from an empty database (SQLite and PostgreSQL): the schema they build is the
one the ORM models describe, they are idempotent, and the command-line entry point works;
0002 on a database holding data."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from gateway.db import alembic_config, create_engine, migrate
from gateway.models import Base
from gateway.security import hash_password
from tests.gateway.conftest import Api, gateway_env, run_gateway, verify_doctor
from tests.procs import Service, run_module

PASSWORD = "s3cure-password"


async def test_migrations_from_empty_database(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        await migrate(engine)  # idempotent: a second replica starting does nothing

        def check(conn) -> tuple[list[str], list[object], str | None]:  # type: ignore[no-untyped-def]
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return (
                inspect(conn).get_table_names(),
                compare_metadata(ctx, Base.metadata),
                ctx.get_current_revision(),
            )

        async with engine.connect() as conn:
            tables, diff, revision = await conn.run_sync(check)
        assert set(Base.metadata.tables) <= set(tables)
        assert diff == [], diff
        assert revision == ScriptDirectory.from_config(alembic_config()).get_current_head()
        if database_url.startswith("sqlite"):
            async with engine.connect() as conn:
                mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            assert mode == "wal"
    finally:
        await engine.dispose()


def test_migrate_command_creates_the_database_file(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "dir" / "irmi.db"
    out = run_module(
        ["gateway.migrate"], {"IRMI_GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}
    )
    assert out.returncode == 0, out.stderr
    assert db.exists()


async def test_0002_existing_doctors_become_pending_their_shares_suspended(
    database_url: str, fakes: dict[str, Service], tmp_path: Path
) -> None:
    """A database at 0001 with a doctor, a patient, a shared study: after the upgrade (the
    gateway migrates at start) the doctor is pending and reads nothing until verified."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0001"))
            now = datetime.now(UTC).replace(tzinfo=None)
            for uid, email, role, specialty in [
                ("p" * 32, "pat@example.org", "patient", None),
                ("d" * 32, "doc@example.org", "doctor", "radiology"),
            ]:
                await conn.execute(
                    text(
                        "INSERT INTO users (id, email, password_hash, role, full_name, specialty,"
                        " licence_number, created_at, failed_logins) VALUES (:id, :email, :pw,"
                        " :role, :email, :specialty, :lic, :now, 0)"
                    ),
                    {
                        "id": uid,
                        "email": email,
                        "pw": hash_password(PASSWORD),
                        "role": role,
                        "specialty": specialty,
                        "lic": "L-1" if specialty else None,
                        "now": now,
                    },
                )
            await conn.execute(
                text(
                    "INSERT INTO studies (id, owner_id, kind, status, created_at, updated_at)"
                    " VALUES (:id, :owner, 'mammography', 'succeeded', :now, :now)"
                ),
                {"id": "s" * 32, "owner": "p" * 32, "now": now},
            )
            await conn.execute(
                text(
                    "INSERT INTO consultations (id, study_id, patient_id, doctor_id, question,"
                    " status, created_at, updated_at) VALUES (:id, :study, :p, :d, 'q?', 'open',"
                    " :now, :now)"
                ),
                {"id": "c" * 32, "study": "s" * 32, "p": "p" * 32, "d": "d" * 32, "now": now},
            )
    finally:
        await engine.dispose()

    env = gateway_env(tmp_path, database_url, fakes["ok"].url, fakes["ok"].url)
    with run_gateway(env, tmp_path) as gw:
        anon = Api(gw.url)

        def as_user(email: str) -> Api:
            r = anon.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
            assert r.status_code == 200, r.text
            return anon.as_token(r.json()["access_token"])

        p, d = as_user("pat@example.org"), as_user("doc@example.org")
        assert d.get("/v1/users/me").json()["doctor_status"] == "pending"
        assert p.get("/v1/doctors").json()["items"] == []
        assert d.get(f"/v1/studies/{'s' * 32}").status_code == 404
        assert d.get("/v1/studies").json()["total"] == 0
        kept = d.get(f"/v1/consultations/{'c' * 32}").json()
        assert kept["study_access"] == "suspended" and kept["study_kind"] == "mammography"
        verify_doctor(anon, database_url, "d" * 32)
        assert d.get(f"/v1/studies/{'s' * 32}").status_code == 200
        assert [x["id"] for x in p.get("/v1/doctors").json()["items"]] == ["d" * 32]
