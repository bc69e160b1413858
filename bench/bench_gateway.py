"""Gateway overhead on a chest predict: the same image posted straight to tb_service
(``POST /v1/predict``) and through the gateway (``POST /v1/predict/chest`` with an API key;
``POST /v1/studies/chest`` with a bearer token, which also stores the image, heatmap and
study), in the same run, alternating, sequential requests, on a real NIH test image when
../shared/data is there. Prints medians / p95 and the gateway's added latency; writes
bench/results/bench_gateway.json.

tb_service runs its committed models when present, otherwise tiny rigged test models with
the real models' I/O (tests/onnxgen.py), which makes inference itself nearly free: the
added latency is then the gateway's own cost, which is what this measures."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tests.procs import REPO, spawn, wait_ready

N = int(os.environ.get("IRMI_BENCH_N", "60"))
WARMUP = 5


def _chest_image() -> tuple[bytes, str]:
    """A real NIH test-split radiograph (1024x1024) when ../shared/data is there, else a
    synthetic one of the same size."""
    import csv

    from shared.settings import default_data_dir

    root = default_data_dir() / "nih-cxr14"
    if (root / "splits.csv").exists():
        with (root / "splits.csv").open() as fh:
            for row in csv.DictReader(fh):
                if row.get("split") == "test":
                    path = root / row["path"]
                    if path.exists():
                        return path.read_bytes(), f"NIH test image {path.name}"
    from tests.tb_service.svc_helpers import chest_png

    return chest_png(1024, 1024), "synthetic 1024x1024 PNG"


def _stats(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="irmi-bench-gw-"))
    tb_env = {"IRMI_TB_USE_GPU": "false", "IRMI_DEV_MODE": "1"}
    model_kind = "committed models"
    if not (REPO / "tb_service" / "models" / "chest-abnormality").is_dir():
        from tests.onnxgen import chest_model_folders

        tb_env["IRMI_TB_MODELS_DIR"] = str(chest_model_folders(tmp / "models"))
        model_kind = "tiny test models (inference nearly free)"
    tb = spawn("tb_service", tb_env, log_dir=tmp)
    gw = None
    try:
        wait_ready(tb, timeout=180)
        gw = spawn(
            "gateway",
            {
                "IRMI_GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'gw.db'}",
                "IRMI_GATEWAY_STORE_DIR": str(tmp / "images"),
                "IRMI_GATEWAY_TB_URL": tb.url,
                "IRMI_GATEWAY_LOG_LEVEL": "WARNING",
                "IRMI_DEV_MODE": "1",
            },
            log_dir=tmp,
        )
        wait_ready(gw, timeout=120)
        client = httpx.Client(timeout=120)
        creds = {"email": "bench@example.org", "password": "bench-password-1", "full_name": "B"}
        client.post(gw.url + "/v1/auth/signup", json=creds).raise_for_status()
        token = client.post(
            gw.url + "/v1/auth/login", json={k: creds[k] for k in ("email", "password")}
        ).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        key = client.post(
            gw.url + "/v1/api-keys", json={"name": "bench", "scopes": ["predict"]}, headers=bearer
        ).json()["key"]
        image, image_kind = _chest_image()
        targets = {
            "direct tb_service /v1/predict": (tb.url + "/v1/predict", {}),
            "gateway /v1/predict/chest (API key)": (
                gw.url + "/v1/predict/chest",
                {"X-API-Key": key},
            ),
            "gateway /v1/studies/chest (stores)": (gw.url + "/v1/studies/chest", bearer),
        }
        times: dict[str, list[float]] = {name: [] for name in targets}
        for i in range(WARMUP + N):
            for name, (url, headers) in targets.items():
                start = time.perf_counter()
                r = client.post(url, files={"file": ("x.png", image, "image/png")}, headers=headers)
                elapsed = (time.perf_counter() - start) * 1000
                if r.status_code not in (200, 201):
                    raise RuntimeError(f"{name}: {r.status_code} {r.text[:200]}")
                if i >= WARMUP:
                    times[name].append(elapsed)
        rows = {name: _stats(ms) for name, ms in times.items()}
        direct = rows["direct tb_service /v1/predict"]["median_ms"]
        print(f"chest predict, {N} sequential requests each, {image_kind}, {model_kind}")
        print(f"{'path':40}{'median ms':>11}{'p95 ms':>9}{'added ms':>10}")
        for name, row in rows.items():
            added = row["median_ms"] - direct
            row["added_median_ms"] = round(added, 2)
            print(f"{name:40}{row['median_ms']:>11.1f}{row['p95_ms']:>9.1f}{added:>10.1f}")
        out = REPO / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_gateway.json").write_text(
            json.dumps({"n": N, "image": image_kind, "models": model_kind, "rows": rows}, indent=2)
        )
    finally:
        if gw is not None:
            gw.stop()
        tb.stop()


if __name__ == "__main__":
    main()
