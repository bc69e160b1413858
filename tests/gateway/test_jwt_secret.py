"""Outside dev mode the gateway refuses to start with a JWT secret under 32 bytes, with a
clear message (a short HS256 secret is brute-forced from one token); 32 bytes start. Without
the image store's key it refuses the same way, before it touches the database."""

from __future__ import annotations

import base64
from pathlib import Path

from tests.gateway.conftest import gateway_env, run_gateway
from tests.procs import Service, spawn


def _env(tmp_path: Path, fakes: dict[str, Service], secret: str) -> dict[str, str]:
    env = gateway_env(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}", fakes["ok"].url, fakes["ok"].url
    )
    env.update(
        {
            "IRMI_DEV_MODE": "0",
            "IRMI_GATEWAY_JWT_SECRET": secret,
            # Outside dev mode the image store's key is required too (tests/gateway/test_privacy).
            "IRMI_GATEWAY_STORE_KEYS": '{"k1": "' + base64.b64encode(b"s" * 32).decode() + '"}',
        }
    )
    return env


def test_short_jwt_secret_refused_outside_dev_mode(
    fakes: dict[str, Service], tmp_path: Path
) -> None:
    for secret in ["x", "a" * 31]:
        svc = spawn("gateway", _env(tmp_path, fakes, secret), log_dir=tmp_path / secret[:3])
        try:
            code = svc.proc.wait(timeout=120)
        finally:
            svc.stop()
        assert code == 2
        out = svc.logs()
        assert "IRMI_GATEWAY_JWT_SECRET" in out and "at least 32 bytes" in out
        assert "Traceback" not in out
        if len(secret) > 1:
            assert secret not in out  # the message tells the length, never the secret


def test_32_byte_secret_starts_outside_dev_mode(fakes: dict[str, Service], tmp_path: Path) -> None:
    with run_gateway(_env(tmp_path, fakes, "k" * 32), tmp_path) as gw:
        assert gw.proc.poll() is None


def test_missing_store_key_refused_before_the_database_is_touched(
    fakes: dict[str, Service], tmp_path: Path
) -> None:
    env = _env(tmp_path, fakes, "k" * 32)
    del env["IRMI_GATEWAY_STORE_KEYS"]
    svc = spawn("gateway", env, log_dir=tmp_path / "nokey")
    try:
        code = svc.proc.wait(timeout=120)
    finally:
        svc.stop()
    assert code == 2
    out = svc.logs()
    assert "IRMI_GATEWAY_STORE_KEYS must be set" in out and "Traceback" not in out
    assert not (tmp_path / "gw.db").exists()  # refused before migrating anything
