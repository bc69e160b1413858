"""tb_service as several worker processes on one port (shared/workers.py, issue 15): requests
are served by more than one process, and /metrics, whichever worker answers it, counts every
request of every worker (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.onnxgen import chest_model_folders
from tests.procs import Service, running, spawn, wait_ready
from tests.tb_service.svc_helpers import chest_png

ROUTE = (
    'irmi_http_requests_total{method="POST",route="/v1/predict",service="tb_service",status="200"}'
)


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tb-metrics")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, metrics_dir: Path) -> Iterator[Service]:
    models = chest_model_folders(tmp_path_factory.mktemp("tb-workers-models"))
    (metrics_dir / "counter_1.db").write_bytes(b"stale")  # emptied at start
    env = {
        "IRMI_TB_MODELS_DIR": str(models),
        "IRMI_TB_USE_GPU": "false",
        "IRMI_TB_PROCESSES": "2",
        "IRMI_TB_METRICS_DIR": str(metrics_dir),
    }
    with running("tb_service", env, timeout=120) as s:
        yield s


def _served(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(ROUTE):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _predicts_by_worker(metrics_dir: Path) -> dict[str, float]:
    """Successful predictions per worker pid, read from the workers' own metric files."""
    out: dict[str, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = re.fullmatch(r"counter_(\d+)\.db", path.name)
        if pid is None:
            continue
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _metric, name, labels, _help = json.loads(key)
            if name == "irmi_http_requests_total" and labels.get("route") == "/v1/predict":
                out[pid.group(1)] = out.get(pid.group(1), 0.0) + value
    return out


def test_metrics_sum_over_the_workers(svc: Service, metrics_dir: Path) -> None:
    data = chest_png(240, 220, seed=5)
    sent = 0

    def post(_: int) -> int:
        with httpx.Client(timeout=60) as c:  # a new connection each: any worker may take it
            return c.post(
                svc.url + "/v1/predict", files={"file": ("x.png", data, "image/png")}
            ).status_code

    with ThreadPoolExecutor(8) as pool:
        while sent < 160 and len(_predicts_by_worker(metrics_dir)) < 2:
            codes = list(pool.map(post, range(16)))
            assert codes == [200] * 16, codes
            sent += 16
    assert not (metrics_dir / "counter_1.db").exists()  # the stale file was removed
    by_worker = _predicts_by_worker(metrics_dir)
    assert len(by_worker) == 2, f"one worker took every request: {by_worker}"
    assert sum(by_worker.values()) == sent
    for _ in range(6):  # whichever worker answers: the count of all of them
        with httpx.Client(timeout=30) as c:
            assert _served(c.get(svc.url + "/metrics").text) == sent


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    """A supervisor killed outright (SIGKILL) leaves no worker serving the port."""
    models = chest_model_folders(tmp_path / "models")
    env = {"IRMI_TB_MODELS_DIR": str(models), "IRMI_TB_USE_GPU": "false", "IRMI_TB_PROCESSES": "2"}
    svc = spawn("tb_service", env, log_dir=tmp_path)
    try:
        wait_ready(svc, timeout=120)
        workers = [p for p in _children(svc.proc.pid) if "spawn_main" in _cmdline(p)]
        assert len(workers) == 2, workers
        svc.proc.send_signal(signal.SIGKILL)
        svc.proc.wait(10)
        deadline = time.monotonic() + 15
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers)
        with pytest.raises(httpx.HTTPError):
            httpx.get(svc.url + "/v2/health/live", timeout=2)
    finally:
        svc.stop()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
