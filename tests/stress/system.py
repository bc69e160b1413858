"""The whole IRMI system on loopback for the stress tests and benchmarks: the real tb_service and
bc_service (as ``tests.gateway.conftest.upstreams`` starts them) and the gateway on a SQLite
file (or a given database URL), with a signed-up patient and a ``predict`` API key."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.gateway.conftest import gateway_env
from tests.procs import REPO, Service, spawn, wait_ready

PASSWORD = "s3cure-password"


def tb_env(models_root: Path, **extra: str) -> dict[str, str]:
    env = {"IRMI_TB_USE_GPU": "false", "IRMI_TB_ONNX_INTRA_OP_THREADS": "1"}
    if not (REPO / "tb_service" / "models" / "chest-abnormality").is_dir():
        from tests.onnxgen import chest_model_folders

        env["IRMI_TB_MODELS_DIR"] = str(chest_model_folders(models_root))
    env.update(extra)
    return env


def bc_env(**extra: str) -> dict[str, str]:
    env = {"IRMI_BC_WORKERS": "1", "IRMI_BC_CPU_WORKERS": "1", "IRMI_BC_USE_GPU": "false"}
    if not any((REPO / "bc_service" / "models").glob("*/*/model.onnx")):
        env["IRMI_BC_REQUIRED_MODELS"] = "[]"  # no committed models yet: heuristic fallbacks
    env.update(extra)
    return env


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size of a process (VmHWM, KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class System:
    tmp: Path
    tb: Service
    bc: Service
    gw: Service
    database_url: str
    token: str = ""
    key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def db_path(self) -> Path:
        return self.tmp / "gw.db"

    @property
    def store_dir(self) -> Path:
        return self.tmp / "images"

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        con = sqlite3.connect(self.db_path)
        try:
            return con.execute(query, args).fetchall()
        finally:
            con.close()

    def blobs(self) -> list[Path]:
        return [p for p in self.store_dir.rglob("*") if p.is_file()]


def signup(base: str, email: str | None = None) -> tuple[str, str]:
    """A new patient: (access token, API key with both scopes)."""
    email = email or f"p-{uuid.uuid4().hex[:10]}@example.org"
    with httpx.Client(base_url=base, timeout=60) as c:
        r = c.post("/v1/auth/signup", json={"email": email, "password": PASSWORD, "full_name": "P"})
        assert r.status_code == 201, r.text
        r = c.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        r = c.post(
            "/v1/api-keys",
            json={"name": "stress", "scopes": ["predict", "studies"]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 201, r.text
        return token, r.json()["key"]


def start_gateway(sysm_tmp: Path, database_url: str, tb: str, bc: str, **extra: str) -> Service:
    env = gateway_env(sysm_tmp, database_url, tb, bc, **extra)
    env.setdefault("IRMI_GATEWAY_LOG_LEVEL", "WARNING")
    gw = spawn("gateway", env, log_dir=sysm_tmp)
    wait_ready(gw, timeout=120)
    return gw


@contextlib.contextmanager
def running_system(
    tmp: Path,
    database_url: str | None = None,
    tb_extra: dict[str, str] | None = None,
    bc_extra: dict[str, str] | None = None,
    gw_extra: dict[str, str] | None = None,
) -> Iterator[System]:
    tmp.mkdir(parents=True, exist_ok=True)
    database_url = database_url or f"sqlite+aiosqlite:///{tmp / 'gw.db'}"
    tb = spawn(
        "tb_service",
        tb_env(tmp / "tb-models", IRMI_TB_LOG_LEVEL="WARNING", **(tb_extra or {})),
        log_dir=tmp,
    )
    bc = spawn("bc_service", bc_env(IRMI_BC_LOG_LEVEL="WARNING", **(bc_extra or {})), log_dir=tmp)
    gw: Service | None = None
    try:
        wait_ready(tb, timeout=180)
        wait_ready(bc, timeout=180)
        gw = start_gateway(tmp, database_url, tb.url, bc.url, **(gw_extra or {}))
        token, key = signup(gw.url)
        yield System(tmp, tb, bc, gw, database_url, token, key)
    finally:
        if gw is not None:
            gw.stop()
        bc.stop()
        tb.stop()
