"""tb_service ``POST /v1/predict`` against its two yardsticks, in the same run, same threads.

Per input (bench/inputs.py: the data's 512 px and 384 px files, 1024 px and 2500x3000 JPEG,
2500x3000 16-bit PNG and DICOM), at concurrency 1, interleaved blocks of:

* ``service``: HTTP to a tb_service started from this checkout (CPU: the service's processes);
* ``in_process``: the same engine and settings in this process (bench/chest_paths.py);
* ``minimal``: a one-thread user script running every model the service runs.

Then throughput at concurrency 16 on the 512 px film: the service, the same work in-process on
16 threads, and tb_service as main had it before issue 15 (``IRMI_BENCH_BASELINE_REF``), so
"today's" figure is measured beside the new one. Writes bench/results/chest.json.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from bench import inputs
from bench.chest_paths import in_process, minimal
from bench.measure import Variant, compare, ratio, tree_cpu
from bench.results import Plan
from bench.services import TB_ENV, baseline_tree, service


def _poster(client: httpx.Client, url: str, data: bytes) -> Any:
    def call(_: int) -> None:
        r = client.post(
            url + "/v1/predict", files={"file": ("x", data, "application/octet-stream")}
        )
        if r.status_code != 200:
            raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")

    return call


def run(plan: Plan) -> dict[str, Any]:
    from tb_service.settings import Settings

    os.environ.update(TB_ENV)  # the in-process engine reads the service's settings
    settings = Settings()
    uploads = inputs.chest_inputs(inputs.QUICK_CHEST if plan.quick else None)
    engine = in_process(settings)
    script = minimal(settings.models_dir)
    rows: list[dict[str, Any]] = []
    with (
        service("tb_service", TB_ENV) as tb,
        httpx.Client(timeout=300, limits=httpx.Limits(max_connections=64)) as client,
    ):
        for up in uploads:
            figs = compare(
                [
                    Variant("service", _poster(client, tb.url, up.data), tree_cpu(tb.proc.pid)),
                    Variant("in_process", lambda _i, d=up.data: engine(d)),
                    Variant("minimal", lambda _i, d=up.data: script(d)),
                ],
                block=plan.block,
                repeats=plan.repeats,
            )
            rows.append(_row(up, figs))
            print(_line(rows[-1]), flush=True)
        film = uploads[0]
        variants = [
            Variant("service", _poster(client, tb.url, film.data), tree_cpu(tb.proc.pid)),
            Variant("in_process", lambda _i: engine(film.data)),
        ]
        tree, tree_note = baseline_tree()
        conc = _concurrency(plan, variants, client, film.data, tree)
    return {
        "settings": {k: v for k, v in TB_ENV.items() if "LOG" not in k},
        "onnx_intra_op_threads": settings.onnx_intra_op_threads,
        "cpu_workers": settings.cpu_workers,
        "per_input": rows,
        "concurrency_16": {**conc, "input": film.name, "baseline": tree_note},
    }


def _concurrency(
    plan: Plan, variants: list[Variant], client: httpx.Client, data: bytes, tree: Any
) -> dict[str, Any]:
    kw = {"block": plan.block16, "repeats": plan.repeats, "concurrency": 16}
    if tree is None:
        return {"figures": compare(variants, **kw)}
    with service("tb_service", TB_ENV, root=tree) as old:
        variants.append(
            Variant("service_today", _poster(client, old.url, data), tree_cpu(old.proc.pid))
        )
        figs = compare(variants, **kw)
    return {
        "figures": figs,
        "throughput_over_today": ratio(figs["service"], figs["service_today"], "throughput_per_s"),
    }


def _row(up: inputs.Upload, figs: dict[str, dict[str, float]]) -> dict[str, Any]:
    svc, inp, mini = figs["service"], figs["in_process"], figs["minimal"]
    return {
        "input": up.name,
        "size": f"{up.width}x{up.height}",
        "bytes": len(up.data),
        "source": up.source,
        "figures": figs,
        "cpu_service_over_in_process": ratio(svc, inp, "cpu_ms_per_req"),
        "cpu_service_over_minimal": ratio(svc, mini, "cpu_ms_per_req"),
        "p50_service_over_in_process": ratio(svc, inp, "p50_ms"),
        "p50_service_over_minimal": ratio(svc, mini, "p50_ms"),
    }


def _line(row: dict[str, Any]) -> str:
    f = row["figures"]
    cells = "  ".join(
        f"{k} p50 {v['p50_ms']:.1f} ms cpu {v['cpu_ms_per_req']:.1f} ms" for k, v in f.items()
    )
    return f"  {row['input']:18} {cells}"
