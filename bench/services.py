"""The services under test, started on loopback from this checkout or from another source tree
(``baseline_tree``: the code main was at before issue 15, so "today's" figure is measured in
the same run as the new one)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.procs import free_port

REPO = Path(__file__).resolve().parent.parent

BASELINE_REF = "59d63c186380fb1808fe5ae2abd381d871046d20"
"""main when issue 15's work began: the "today" of its targets (IRMI_BENCH_BASELINE_REF)."""

# The deployment's defaults, said out loud: the bench runs every service and its in-process
# yardstick with these (ONNX Runtime and OpenCV threads are the services' own defaults).
TB_ENV = {"IRMI_TB_USE_GPU": "false", "IRMI_TB_LOG_LEVEL": "WARNING", "IRMI_TB_MAX_QUEUE": "256"}
BC_ENV = {"IRMI_BC_USE_GPU": "false", "IRMI_BC_LOG_LEVEL": "WARNING"}


@dataclass
class Running:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    ready_s: float  # from spawn to the first 200 of /v2/health/ready


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def service(
    module: str, env: dict[str, str], root: Path = REPO, log_dir: Path | None = None
) -> Iterator[Running]:
    port = free_port()
    full = {**os.environ, "PYTHONPATH": str(root), "IRMI_DEV_MODE": "1", **env}
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="irmi-bench-"))
    log = log_dir / f"{module}-{port}.log"
    t0 = time.perf_counter()
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)],
            env=full,
            cwd=str(root),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{module} exited:\n{log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{module} not ready in 240 s:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        yield Running(module, url, proc, log, time.perf_counter() - t0)
    finally:
        _stop(proc)


def baseline_tree() -> tuple[Path | None, str]:
    """A copy of the baseline commit's files (``git archive``), or None with the reason."""
    ref = os.environ.get("IRMI_BENCH_BASELINE_REF", BASELINE_REF)
    if ref in ("", "none"):
        return None, "baseline tree off (IRMI_BENCH_BASELINE_REF=none)"
    out = Path(tempfile.mkdtemp(prefix="irmi-baseline-"))
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"baseline {ref} not available ({type(exc).__name__})"
    import io

    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(out, filter="data")
    return out, f"commit {ref[:10]}"
