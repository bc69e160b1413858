"""The whole system under load, and the one summary table of ``make bench``.

``python -m bench bench_system`` starts tb_service, bc_service and the gateway (SQLite) on
loopback (tests/stress/system.py) and measures, in one run on the same inputs:

* chest predict latency (p50, p95) and throughput at concurrency 1, 4, 16, 32: straight to
  tb_service (``POST /v1/predict``), through the gateway (``POST /v1/predict/chest``, API key)
  and raw ONNX Runtime in this process (gate + abnormality on the preprocessed tensors);
* the gateway's overhead on trivial routes (``/v2/health/live``; ``/v1/users/me``, which
  checks the token against the database) against tb_service's ``/v2/health/live``;
* 200 concurrent uploads (tests/stress/load.py): every answer 2xx or 503 + Retry-After, no
  study lost or duplicated (API, database and image store checked);
* the peak RSS (VmHWM) of each service after all of it.

It writes bench/results/system.json, then prints ONE summary table from every
bench/results/*.json present (chest, mammography by stage, gateway, system). Env:
``BENCH_SYSTEM_REQUESTS`` (per level, default 64), ``BENCH_SYSTEM_LEVELS`` (default
"1,4,16,32"), ``BENCH_SYSTEM_UPLOADS`` (default 200).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bench_chest import _images, _load, raw_runner
from tests.stress.load import run_load
from tests.stress.system import System, running_system, vm_hwm_kib

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), no GPU, {platform.system()} {platform.release()}"


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _chest_levels(system: System, images: list[bytes], n: int, levels: list[int]) -> list[dict]:
    models_dir = Path(os.environ.get("IRMI_TB_MODELS_DIR", str(REPO / "tb_service" / "models")))
    raw, _ = raw_runner(models_dir, images)
    refused: dict[str, int] = {"direct": 0, "gateway": 0}
    rows = []
    with httpx.Client(timeout=300, limits=httpx.Limits(max_connections=64)) as client:

        def post(url: str, i: int, headers: dict[str, str], which: str) -> None:
            files = {"file": ("x.jpg", images[i % len(images)], "image/jpeg")}
            r = client.post(url, files=files, headers=headers)
            if r.status_code == 503 and r.headers.get("retry-after"):
                refused[which] += 1
            elif r.status_code not in (200, 422):
                raise RuntimeError(f"{which}: {r.status_code} {r.text[:200]}")

        def direct(i: int) -> None:
            post(system.tb.url + "/v1/predict", i, {}, "direct")

        def gateway(i: int) -> None:
            post(system.gw.url + "/v1/predict/chest", i, {"X-API-Key": system.key}, "gateway")

        for i in range(4):
            direct(i)
            gateway(i)
            raw(i)
        for c in levels:
            refused.update(direct=0, gateway=0)
            tb0 = _cpu_s(system.tb.proc.pid)
            d = _load(n, c, direct)
            tb1, gw1 = _cpu_s(system.tb.proc.pid), _cpu_s(system.gw.proc.pid)
            g = _load(n, c, gateway)
            gw2 = _cpu_s(system.gw.proc.pid)
            b = _load(n, c, raw)
            # CPU per request is far less sensitive to other load on the machine than latency
            d["tb_cpu_ms_per_req"] = round((tb1 - tb0) * 1000 / n, 2)
            g["gateway_cpu_ms_per_req"] = round((gw2 - gw1) * 1000 / n, 2)
            rows.append(
                {
                    "concurrency": c,
                    "direct": d,
                    "gateway": g,
                    "raw_onnxruntime": b,
                    "direct_503": refused["direct"],
                    "gateway_503": refused["gateway"],
                    "p50_direct_over_raw": round(d["p50_ms"] / max(b["p50_ms"], 1e-6), 2),
                    "p50_gateway_over_direct": round(g["p50_ms"] / max(d["p50_ms"], 1e-6), 2),
                    "throughput_raw_over_gateway": round(
                        b["throughput_per_s"] / max(g["throughput_per_s"], 1e-6), 2
                    ),
                }
            )
    return rows


def _trivial(system: System, n: int = 200) -> dict[str, dict[str, float]]:
    targets = {
        "tb_service GET /v2/health/live": (system.tb.url + "/v2/health/live", {}),
        "gateway GET /v2/health/live": (system.gw.url + "/v2/health/live", {}),
        "gateway GET /v1/users/me (token + DB)": (
            system.gw.url + "/v1/users/me",
            system.bearer(),
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in targets}
    with httpx.Client(timeout=60) as client:
        for i in range(n + 10):
            for name, (url, headers) in targets.items():
                t0 = time.perf_counter()
                r = client.get(url, headers=headers)
                ms = (time.perf_counter() - t0) * 1000
                r.raise_for_status()
                if i >= 10:
                    times[name].append(ms)
    out = {}
    for name, ms in times.items():
        ms.sort()
        out[name] = {
            "p50_ms": round(statistics.median(ms), 3),
            "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 3),
        }
    return out


def main() -> None:
    n = int(os.environ.get("BENCH_SYSTEM_REQUESTS", "64"))
    levels = [int(x) for x in os.environ.get("BENCH_SYSTEM_LEVELS", "1,4,16,32").split(",")]
    uploads = int(os.environ.get("BENCH_SYSTEM_UPLOADS", "200"))
    images, images_note = _images()
    tmp = Path(tempfile.mkdtemp(prefix="irmi-bench-system-"))
    with running_system(tmp) as system:
        print(f"machine: {_machine()}\nimages: {images_note}; {n} requests per level")
        chest = _chest_levels(system, images, n, levels)
        gw0 = _cpu_s(system.gw.proc.pid)
        trivial = _trivial(system)
        trivial_cpu = (_cpu_s(system.gw.proc.pid) - gw0) * 1000 / (2 * 210)
        load = run_load(system, uploads).as_dict()
        peak = {
            name: round(vm_hwm_kib(svc.proc.pid) / 1024, 1)
            for name, svc in (
                ("gateway", system.gw),
                ("tb_service", system.tb),
                ("bc_service", system.bc),
            )
        }
    record = {
        "machine": _machine(),
        "load_average_at_end": os.getloadavg(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "images": images_note,
        "requests_per_level": n,
        "chest": chest,
        "trivial_routes": trivial,
        "gateway_cpu_ms_per_trivial_request": round(trivial_cpu, 3),
        "load": load,
        "peak_rss_mib": peak,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "system.json").write_text(json.dumps(record, indent=2))
    print(f"written: {RESULTS / 'system.json'}")
    print(summary())


# ----------------------------------------------------------------------------- summary


def _read(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def summary() -> str:
    """One table from every bench/results/*.json present."""
    lines = ["", "=" * 78, "IRMI benchmark summary (bench/results/*.json)", "=" * 78]
    system = _read("system.json")
    if system:
        lines.append(f"machine: {system['machine']}  ({system['when']})")
        if "load_average_at_end" in system:
            la = ", ".join(f"{x:.1f}" for x in system["load_average_at_end"])
            lines.append(f"load average at the end (machine shared with other jobs): {la}")
        lines.append("")
        lines.append("chest predict, 1024x1024 JPEG: p50 / p95 ms, throughput img/s")
        lines.append(
            f"{'conc':>4} | {'direct tb_service':>22} | {'through gateway':>22} | "
            f"{'raw ONNX Runtime':>22} | {'tb/raw':>6} {'gw/tb':>6}"
        )
        for r in system["chest"]:
            cells = []
            for key in ("direct", "gateway", "raw_onnxruntime"):
                s = r[key]
                cells.append(
                    f"{s['p50_ms']:>7.1f}/{s['p95_ms']:>7.1f} {s['throughput_per_s']:>6.1f}"
                )
            lines.append(
                f"{r['concurrency']:>4} | {cells[0]:>22} | {cells[1]:>22} | {cells[2]:>22} | "
                f"{r['p50_direct_over_raw']:>6} {r['p50_gateway_over_direct']:>6}"
            )
            if "tb_cpu_ms_per_req" in r["direct"]:
                lines.append(
                    f"     CPU ms/request: tb_service {r['direct']['tb_cpu_ms_per_req']}, "
                    f"gateway's own {r['gateway'].get('gateway_cpu_ms_per_req')}"
                )
            if r["direct_503"] or r["gateway_503"]:
                lines.append(
                    f"     503 + Retry-After: direct {r['direct_503']}, gateway {r['gateway_503']}"
                )
        lines.append("")
        lines.append("trivial routes (sequential): p50 / p95 ms")
        for name, s in system["trivial_routes"].items():
            lines.append(f"  {name:40} {s['p50_ms']:>8.2f} {s['p95_ms']:>8.2f}")
        if "gateway_cpu_ms_per_trivial_request" in system:
            cpu = system["gateway_cpu_ms_per_trivial_request"]
            lines.append(f"  gateway CPU per trivial request (mean of both routes): {cpu} ms")
        ld = system["load"]
        lines.append("")
        lines.append(
            f"load: {ld['uploads']} concurrent uploads in {ld['wall_s']} s: statuses "
            f"{ld['statuses']}; accepted {ld['accepted']}, 503+Retry-After "
            f"{ld['refused_503_retry_after']}; bad answers {len(ld['bad_responses'])}; "
            f"lost/duplicated {len(ld['problems'])}"
        )
        rss = ", ".join(
            f"{k} {v['rss_before'] // 1024}->{v['rss_after'] // 1024} MiB"
            for k, v in ld["rss_kib"].items()
        )
        lines.append(f"  RSS before->after the load: {rss}")
        peak = ", ".join(f"{k} {v} MiB" for k, v in system["peak_rss_mib"].items())
        lines.append(f"  peak RSS (VmHWM) over the whole run: {peak}")
    mammo = _read("mammo.json")
    if mammo:
        view, exam = mammo.get("per_view_ms", {}), mammo.get("per_exam_ms", {})
        lines.append("")
        lines.append("mammography by stage (ms per view | per 4-view exam)")
        for stage in [k for k in view if k != "total"]:
            e = exam.get(stage)
            lines.append(f"  {stage:12}{view[stage]:>10.1f} | {e if e is not None else '':>10}")
        lines.append(f"  {'total':12}{view.get('total', 0):>10.1f} | {exam.get('wall', '')!s:>10}")
    gw = _read("bench_gateway.json")
    if gw:
        lines.append("")
        lines.append(f"gateway chest path, sequential ({gw.get('models')}): median ms, added ms")
        for name, row in gw["rows"].items():
            lines.append(
                f"  {name:40} {row['median_ms']:>8.1f} {row.get('added_median_ms', 0):>8.1f}"
            )
    chest = _read("chest.json")
    if chest:
        lines.append("")
        lines.append(f"tb_service vs raw ORT (bench_chest, {chest.get('models')}): p50 ms")
        for r in chest["rows"]:
            lines.append(
                f"  c={r['concurrency']:<3} service {r['service']['p50_ms']:>8.1f}  "
                f"no-heatmap {r['service_no_heatmap']['p50_ms']:>8.1f}  "
                f"raw {r['raw_onnxruntime']['p50_ms']:>8.1f}  x{r['latency_ratio_p50']}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
