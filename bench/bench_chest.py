"""Chest X-ray service vs raw ONNX Runtime, same images, same run.

``python -m bench bench_chest`` starts ``python -m tb_service`` on a free port and measures
per-image latency (p50/p95) and throughput at concurrency 1, 4 and 16 over HTTP
(``POST /v1/predict``: decode, preprocessing, batching, gate + abnormality model, heatmap PNG,
JSON). Beside it, in this process, the raw ONNX Runtime models (gate + abnormality, batch 1 per
call, the same session options) run on the same images' already-preprocessed tensors from as
many threads. The ratio says what the service costs over bare inference.

Models: the committed ``tb_service/models`` when both chest models are there, else tiny test
models with the same I/O (said in the output; those numbers measure the service overhead only).
Images: real chest X-rays from ``../shared/data`` when present, else synthetic ones.
Environment knobs: ``BENCH_CHEST_REQUESTS`` (per concurrency level, default 48),
``BENCH_CHEST_LEVELS`` (default "1,4,16").
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

from shared.imaging import decode_image
from shared.model import OnnxModel
from shared.settings import default_data_dir
from tb_service import preprocess
from tb_service.engine import input_side
from tb_service.lungseg import committed_seg_model
from tb_service.settings import MODELS_DIR

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


# --------------------------------------------------------------------------- inputs


def raw_runner(models_dir: Path, images: list[bytes]) -> tuple[Callable[[int], None], str | None]:
    """Raw ONNX Runtime (gate + abnormality model, the service's default session options) on
    the images preprocessed once up front: ``raw(i)`` runs image ``i % len(images)``. Also
    returns the execution provider the sessions got."""
    gate = OnnxModel(models_dir / "chest-gate" / _latest(models_dir / "chest-gate"), use_gpu=True)
    abn = OnnxModel(
        models_dir / "chest-abnormality" / _latest(models_dir / "chest-abnormality"), use_gpu=True
    )
    gate.load()
    abn.load()
    gate_pipe = preprocess.gate_pipeline(input_side(gate, preprocess.GATE_INPUT_SIZE))
    chest_pipe = preprocess.chest_pipeline_for(
        abn.card, input_side(abn, preprocess.INPUT_SIZE), committed_seg_model()
    )
    tensors = []
    for data in images:
        decoded = decode_image(data)
        tensors.append((gate_pipe(decoded).image[None, ...], chest_pipe(decoded).image[None, ...]))

    def raw(i: int) -> None:
        g, c = tensors[i % len(tensors)]
        gate.run_single_input(g)
        abn.run_single_input(c)

    return raw, abn.provider


def _models_dir() -> tuple[Path, str]:
    if all((MODELS_DIR / n).is_dir() for n in ("chest-gate", "chest-abnormality")):
        return MODELS_DIR, "committed models (tb_service/models)"
    sys.path.insert(0, str(REPO))
    from tests.onnxgen import chest_model_folders

    tmp = Path(tempfile.mkdtemp(prefix="bench-chest-"))
    chest_model_folders(tmp, size=preprocess.INPUT_SIZE, gate_size=preprocess.GATE_INPUT_SIZE)
    return tmp, "TINY TEST MODELS (real ones not committed yet): service overhead only"


def _synthetic(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    h, w = 1024, 1024
    img = np.full((h, w), 20.0, dtype=np.float32)
    cv2.ellipse(img, (w // 2, h // 2), (int(w * 0.45), int(h * 0.48)), 0, 0, 360, 190, -1)
    for cx in (int(w * 0.32), int(w * 0.68)):
        cv2.ellipse(img, (cx, int(h * 0.45)), (int(w * 0.13), int(h * 0.28)), 0, 0, 360, 70, -1)
    img = cv2.GaussianBlur(img, (0, 0), 3) + rng.normal(0, 6, (h, w))
    ok, buf = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8))
    assert ok
    return bytes(buf.tobytes())


def _images(n: int = 16) -> tuple[list[bytes], str]:
    data = default_data_dir()
    found: list[Path] = []
    for sub in ("nih-cxr14", "kermany-pediatric"):
        folder = data / sub
        if folder.is_dir():
            found += sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".png", ".jpg"})[
                : n // 2
            ]
    if len(found) >= 4:
        return [p.read_bytes() for p in found], f"{len(found)} real images from {data}"
    return [_synthetic(i) for i in range(n)], f"{n} synthetic 1024x1024 JPEGs"


# --------------------------------------------------------------------------- measurement


def _summary(latencies_ms: list[float], wall_s: float) -> dict[str, float]:
    lat = sorted(latencies_ms)
    p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
    return {
        "n": len(lat),
        "p50_ms": round(statistics.median(lat), 2),
        "p95_ms": round(p95, 2),
        "throughput_per_s": round(len(lat) / wall_s, 2),
    }


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _load(
    n: int, concurrency: int, call: Callable[[int], None], cpu_pid: int | None = None
) -> dict[str, float]:
    """Latency/throughput of ``n`` calls from ``concurrency`` threads, plus the CPU time per
    call that process ``cpu_pid`` spent (wall figures suffer on a shared machine; CPU ms
    per image does much less)."""
    pid = cpu_pid or os.getpid()
    cpu0 = _proc_cpu_s(pid)
    out = _load_wall(n, concurrency, call)
    out["cpu_ms_per_image"] = round((_proc_cpu_s(pid) - cpu0) / n * 1000.0, 2)
    return out


def _load_wall(n: int, concurrency: int, call: Callable[[int], None]) -> dict[str, float]:
    latencies: list[float] = []

    def one(i: int) -> None:
        t0 = time.perf_counter()
        call(i)
        latencies.append((time.perf_counter() - t0) * 1000.0)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    return _summary(latencies, time.perf_counter() - start)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_service(models_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "IRMI_DEV_MODE": "1",
            "IRMI_TB_MODELS_DIR": str(models_dir),
            "IRMI_TB_LOG_LEVEL": "WARNING",
            "IRMI_TB_MAX_QUEUE": "256",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tb_service", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=str(REPO),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tb_service exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise TimeoutError("tb_service not ready in 120 s")


def main() -> None:
    n_req = int(os.environ.get("BENCH_CHEST_REQUESTS", "48"))
    levels = [int(x) for x in os.environ.get("BENCH_CHEST_LEVELS", "1,4,16").split(",")]
    models_dir, models_note = _models_dir()
    images, images_note = _images()
    print(f"models: {models_note}\nimages: {images_note}\nrequests per level: {n_req}")

    raw, provider = raw_runner(models_dir, images)
    port = _free_port()
    proc = _start_service(models_dir, port)
    url = f"http://127.0.0.1:{port}/v1/predict"
    rows: list[dict[str, Any]] = []
    try:
        with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=64)) as client:

            def service(i: int, target: str = url) -> None:
                files = {"file": ("x", images[i % len(images)], "application/octet-stream")}
                r = client.post(target, files=files)
                if r.status_code not in (200, 422):
                    raise RuntimeError(f"service answered {r.status_code}: {r.text[:200]}")

            def service_no_heatmap(i: int) -> None:
                service(i, url + "?heatmap=false")

            for i in range(4):  # warm both paths
                service(i)
                raw(i)
            for c in levels:
                svc = _load(n_req, c, service, proc.pid)
                svc_plain = _load(n_req, c, service_no_heatmap, proc.pid)
                bare = _load(n_req, c, raw)  # this process (includes its idle threads)
                rows.append(
                    {
                        "concurrency": c,
                        "service": svc,
                        "service_no_heatmap": svc_plain,
                        "raw_onnxruntime": bare,
                        "latency_ratio_p50_no_heatmap": round(
                            svc_plain["p50_ms"] / max(bare["p50_ms"], 1e-6), 2
                        ),
                        "latency_ratio_p50": round(svc["p50_ms"] / max(bare["p50_ms"], 1e-6), 2),
                        "throughput_ratio": round(
                            bare["throughput_per_s"] / max(svc["throughput_per_s"], 1e-6), 2
                        ),
                    }
                )
            metrics = client.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()

    batch_sum = batch_count = 0.0
    for line in metrics.splitlines():
        if line.startswith("irmi_batch_size_sum") and 'model="chest"' in line:
            batch_sum = float(line.rsplit(" ", 1)[1])
        if line.startswith("irmi_batch_size_count") and 'model="chest"' in line:
            batch_count = float(line.rsplit(" ", 1)[1])
    mean_batch = round(batch_sum / batch_count, 2) if batch_count else None

    print(
        f"\n{'conc':>4} | {'svc p50':>8} {'svc p95':>8} {'svc img/s':>9} | "
        f"{'no-hm p50':>9} {'no-hm img/s':>11} | "
        f"{'raw p50':>8} {'raw p95':>8} {'raw img/s':>9} | {'p50 x':>7} {'thr x':>7}"
    )
    for r in rows:
        s, n, b = r["service"], r["service_no_heatmap"], r["raw_onnxruntime"]
        print(
            f"{r['concurrency']:>4} | {s['p50_ms']:>8} {s['p95_ms']:>8} "
            f"{s['throughput_per_s']:>9} | {n['p50_ms']:>9} {n['throughput_per_s']:>11} | "
            f"{b['p50_ms']:>8} {b['p95_ms']:>8} "
            f"{b['throughput_per_s']:>9} | {r['latency_ratio_p50']:>7} {r['throughput_ratio']:>7}"
        )
    print(
        "svc = POST /v1/predict with heatmap; no-hm = ?heatmap=false; raw = gate + abnormality "
        "ONNX Runtime runs on the preprocessed tensors, batch 1 per call.\n"
        "p50 x = svc p50 / raw p50 (latency cost of HTTP + decode + preprocessing + batching + "
        "heatmap); thr x = raw img/s / svc img/s."
    )
    print("CPU ms per image (service process / this process for raw), less load-sensitive:")
    for r in rows:
        print(
            f"  conc {r['concurrency']:>2}: service {r['service']['cpu_ms_per_image']}, "
            f"no heatmap {r['service_no_heatmap']['cpu_ms_per_image']}, "
            f"raw {r['raw_onnxruntime']['cpu_ms_per_image']}"
        )
    print(f"mean service batch size over the run: {mean_batch}")
    print(f"load average at the end: {os.getloadavg()} on {os.cpu_count()} CPUs")
    out = {
        "models": models_note,
        "models_dir": str(models_dir),
        "provider": provider,
        "images": images_note,
        "requests_per_level": n_req,
        "cpu_count": os.cpu_count(),
        "mean_batch_size": mean_batch,
        "load_average_end": os.getloadavg(),
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "chest.json").write_text(json.dumps(out, indent=2))
    print(f"written: {RESULTS / 'chest.json'}")


def _latest(folder: Path) -> str:
    versions = [p.name for p in folder.iterdir() if (p / "model.onnx").exists()]
    return max(versions, key=lambda v: tuple(int(x) if x.isdigit() else -1 for x in v.split(".")))


if __name__ == "__main__":
    main()
