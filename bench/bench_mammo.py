"""bc_service's 4-view exam against its two yardsticks, in the same run, same threads.

The exam (bench/inputs.py: four mini-MIAS views as they are, 1024 px PNG, and enlarged to
3000x4000 JPEG with film noise) is sent as one ``POST /v1/exams?stream=true`` (tagged views)
and read to its ``result`` event; beside it, in interleaved blocks, the same pipeline
in-process and a minimal one-thread user script (bench/mammo_paths.py). The figure of merit
is the wall time of one exam (p50) and the CPU it costs. Writes bench/results/mammo.json.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from bench import inputs
from bench.mammo_paths import in_process, minimal
from bench.measure import Variant, compare, ratio, tree_cpu
from bench.results import Plan
from bench.services import BC_ENV, service

SIZES: list[tuple[int, int] | None] = [None, (3000, 4000)]


def _exam(client: httpx.Client, url: str, views: list[tuple[str, bytes]]) -> Any:
    files = [(tag, (f"{tag}.img", data, "application/octet-stream")) for tag, data in views]

    def call(_: int) -> None:
        with client.stream("POST", url + "/v1/exams?stream=true", files=files) as r:
            if r.status_code != 200:
                r.read()
                raise RuntimeError(f"bc_service: {r.status_code} {r.text[:200]}")
            event = ""
            for line in r.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif event == "result" and line.startswith("data:"):
                    if '"succeeded"' not in line:
                        raise RuntimeError(f"exam failed: {line[:300]}")
                    return
                elif event == "error" and line.startswith("data:"):
                    raise RuntimeError(f"exam error: {line[:300]}")
        raise RuntimeError("stream ended without a result")

    return call


def run(plan: Plan) -> dict[str, Any]:
    from bc_service.settings import Settings

    os.environ.update(BC_ENV)
    settings = Settings()
    engine = in_process(settings)
    script = minimal(settings.models_dir)
    rows = []
    with service("bc_service", BC_ENV) as bc, httpx.Client(timeout=600) as client:
        for size in SIZES:
            exam = inputs.mammo_exam(size)
            views = [(tag, up.data) for tag, up in exam]
            figs = compare(
                [
                    Variant("service", _exam(client, bc.url, views), tree_cpu(bc.proc.pid)),
                    Variant("in_process", lambda _i, v=views: engine(v)),
                    Variant("minimal", lambda _i, v=views: script(v)),
                ],
                block=1,
                repeats=plan.exam_repeats,
                warmup=1,
            )
            up = exam[0][1]
            rows.append(
                {
                    "input": up.name,
                    "size": f"{up.width}x{up.height}",
                    "views": len(views),
                    "bytes": sum(len(d) for _, d in views),
                    "figures": figs,
                    "p50_service_over_in_process": ratio(
                        figs["service"], figs["in_process"], "p50_ms"
                    ),
                    "p50_service_over_minimal": ratio(figs["service"], figs["minimal"], "p50_ms"),
                    "cpu_service_over_in_process": ratio(
                        figs["service"], figs["in_process"], "cpu_ms_per_req"
                    ),
                }
            )
            f = figs["service"]
            print(
                f"  {up.name}: exam p50 {f['p50_ms']:.0f} ms, cpu {f['cpu_ms_per_req']:.0f} ms",
                flush=True,
            )
    return {"settings": {k: v for k, v in BC_ENV.items() if "LOG" not in k}, "exams": rows}
