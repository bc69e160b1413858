"""Gateway start-up (issue 15): a restart on a database already at the migration heads loads
no Alembic (one query instead), and importing the app imports neither it nor the other
libraries only some requests need (PDF, DICOM SR)."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory

import gateway.db
from gateway.db import alembic_config, create_engine, head_revisions, migrate
from gateway.settings import Settings
from gateway.upstream import Upstreams, tls_verification
from tests.procs import REPO


def test_head_revisions_are_alembics_heads() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert head_revisions() == set(heads)


async def test_a_database_at_the_heads_is_not_migrated_again(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(database_url)
    try:
        await migrate(engine)

        def refuse(_conn: Any) -> None:
            raise AssertionError("Alembic ran on a database at the heads")

        monkeypatch.setattr(gateway.db, "_upgrade", refuse)
        await migrate(engine)
    finally:
        await engine.dispose()


def test_heads_are_read_from_every_assignment_form(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "0001_a.py").write_text('revision = "0001"\ndown_revision = None\n')
    (versions / "0002_b.py").write_text('revision: str = "0002"\ndown_revision = "0001"\n')
    (versions / "0003_c.py").write_text('revision = "0003"\ndown_revision = ("0002",)\n')
    assert head_revisions(versions) == {"0003"}


# Libraries only some requests need, each a tenth to a third of a second to import: loaded on
# first use (in the worker thread that needs them), not by every start-up.
ON_FIRST_USE = ("alembic", "fpdf", "fontTools", "highdicom", "pydicom", "fhir.resources")


def test_importing_the_gateway_app_imports_none_of_the_first_use_libraries() -> None:
    code = f"import sys, gateway.app; print([m for m in {ON_FIRST_USE!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO)},
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_tls_is_verified_where_an_upstream_is_https_and_not_loaded_where_none_is() -> None:
    # http-only upstreams: no CA bundle loaded at start-up (no handshake can happen).
    assert tls_verification(["http://tb:8001", "http://bc:8002"]) is False
    # One https upstream: both clients share one verifying default context.
    ctx = tls_verification(["http://tb:8001", "HTTPS://bc.example:8443"])
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


async def test_the_upstream_clients_verify_an_https_upstream(tmp_path: Path) -> None:
    settings = Settings(
        dev_mode=True,
        jwt_secret="unit-test-secret-0123456789abcdef0123",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}",
        tb_url="http://127.0.0.1:8001",
        bc_url="https://bc.example:8443",
    )
    upstreams = Upstreams(settings)
    try:
        for client in (upstreams.tb, upstreams.bc):
            pool = client._transport._pool  # type: ignore[attr-defined]
            assert pool._ssl_context.verify_mode == ssl.CERT_REQUIRED
    finally:
        await upstreams.close()
