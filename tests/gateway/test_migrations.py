"""Migrations from an empty database (SQLite and PostgreSQL): the schema they build is the
one the ORM models describe, they are idempotent, and the command-line entry point works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from gateway.db import alembic_config, create_engine, migrate
from gateway.models import Base
from tests.procs import REPO


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
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "IRMI_GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
    }
    out = subprocess.run(
        [sys.executable, "-m", "gateway.migrate"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert db.exists()
