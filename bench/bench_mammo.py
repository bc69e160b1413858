"""Mammography: time per view and per 4-view exam by stage, and the patch stage's throughput
against raw ONNX Runtime on the same patches, in the same run.

``python -m bench bench_mammo``. Env: ``BENCH_MAMMO_REPEAT`` (default 3) and the service's
settings (``IRMI_BC_USE_GPU=0`` forces the CPU, ``IRMI_BC_MODELS_DIR``,
``IRMI_BC_PATCH_BATCH_SIZE``). Images: four mini-mias test-split mammograms (1024 x 1024, two
left and two right breasts) when ``../shared/data`` is present, else synthetic phantoms.
Writes ``bench/results/mammo.json``.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bc_service.exams import ExamManager, add_decode_time
from bc_service.pipeline import MammoPipeline, ViewInput
from bc_service.pipeline.features import patches_at
from bc_service.settings import Settings
from shared.contracts.mammo import STAGES
from shared.imaging import decode_image
from shared.model import ModelRepository
from shared.settings import default_data_dir

PATCH_MODEL = "mammo-patch"


def _images() -> tuple[list[tuple[str, bytes]], str]:
    root = default_data_dir() / "mini-mias"
    if (root / "splits.csv").exists():
        with (root / "splits.csv").open() as fh:
            test = {r["path"] for r in csv.DictReader(fh) if r["split"] == "test"}
        with (root / "labels.csv").open() as fh:
            rows = [r for r in csv.DictReader(fh) if r["path"] in test]
        picked = [r for r in rows if r["laterality"] == "L"][:2]
        picked += [r for r in rows if r["laterality"] == "R"][:2]
        out = [(r["path"], (root / r["path"]).read_bytes()) for r in picked]
        return out, "mini-mias test split, 1024x1024 PNG"
    import cv2

    from tests.imagegen import mammo_phantom

    out = []
    for i, side in enumerate(["left", "left", "right", "right"]):
        img = mammo_phantom(1024, 832, chest_wall=side, seed=i)
        out.append((f"phantom-{i}", cv2.imencode(".png", img)[1].tobytes()))
    return out, "synthetic phantoms 1024x832 (../shared/data absent)"


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else 0.0


def _noop(stage: str, fraction: float) -> None:
    return None


def bench_views(
    pipe: MammoPipeline, images: list[tuple[str, bytes]], repeat: int
) -> dict[str, float]:
    """Mean ms per stage of one view (file decode included in `decode`), over every image."""
    per_stage: dict[str, list[float]] = {}
    totals: list[float] = []
    for _ in range(repeat):
        for i, (_, data) in enumerate(images):
            t0 = time.perf_counter()
            img = decode_image(data)
            file_ms = (time.perf_counter() - t0) * 1000
            result = pipe.run_view(ViewInput(view_id=f"view-{i}", image=img, tag=None), _noop)
            add_decode_time(result, file_ms)
            totals.append((time.perf_counter() - t0) * 1000)
            for stage, ms in result.timings_ms.items():
                per_stage.setdefault(stage, []).append(ms)
    names = [*STAGES, *(k for k in per_stage if k not in STAGES)]  # e.g. heatmap_png
    out = {s: round(_mean(per_stage.get(s, [])), 2) for s in names}
    out["total"] = round(_mean(totals), 2)
    return out


async def _exam_once(manager: ExamManager, images: list[tuple[str, bytes]]) -> dict[str, Any]:
    started = time.monotonic()
    views, decode_ms = [], {}
    for i, (_, data) in enumerate(images):
        t0 = time.perf_counter()
        img = decode_image(data)
        decode_ms[f"view-{i}"] = (time.perf_counter() - t0) * 1000
        views.append(ViewInput(view_id=f"view-{i}", image=img, tag=None))
    job = manager.submit(views, decode_ms, started)
    events = 0
    async for _ in job.follow():
        events += 1
    exam = job.snapshot().result
    assert job.status == "succeeded" and exam is not None, job.error
    by_stage: dict[str, float] = {}
    for v in exam.views:
        for stage, ms in v.timings_ms.items():
            by_stage[stage] = by_stage.get(stage, 0.0) + ms
    by_stage["combine"] = exam.timings_ms.get("combine", 0.0)
    by_stage["wall"] = (time.monotonic() - started) * 1000
    by_stage["events"] = events
    return by_stage


def bench_exams(
    pipe: MammoPipeline, images: list[tuple[str, bytes]], repeat: int
) -> dict[str, Any]:
    """A 4-view exam through the service's job machinery (worker thread, event log)."""

    async def run() -> list[dict[str, Any]]:
        manager = ExamManager(pipe, workers=1, max_queued=1)
        try:
            return [await _exam_once(manager, images) for _ in range(repeat)]
        finally:
            manager.shutdown()

    runs = asyncio.run(run())
    extra = sorted({k for r in runs for k in r} - {*STAGES, "combine", "wall", "events"})
    keys = [*STAGES, *extra, "combine", "wall"]
    out: dict[str, Any] = {k: round(_mean([r.get(k, 0.0) for r in runs]), 2) for k in keys}
    out["events_per_exam"] = runs[0]["events"]
    return out


def bench_patches(
    pipe: MammoPipeline, repo: ModelRepository, images: list[tuple[str, bytes]], repeat: int
) -> dict[str, Any] | None:
    """The heatmap stage (patch extraction + batched inference + painting) vs a bare
    onnxruntime session fed the very same patches, same batch size, same providers."""
    if PATCH_MODEL not in repo:
        return None
    import onnxruntime as ort

    model = repo.get(PATCH_MODEL)
    states = []
    for i, (_, data) in enumerate(images):
        view = ViewInput(view_id=f"view-{i}", image=decode_image(data), tag=None)
        state, _ = pipe.run_state(view)
        states.append(state)
    heat_stage = pipe.stages[STAGES.index("heatmaps")]
    batch = int(getattr(heat_stage, "batch_size", 64))
    n_patches = sum(len(s.patch_centres) for s in states)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = model.intra_op_threads
    opts.inter_op_num_threads = model.inter_op_threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = [model.provider or "CPUExecutionProvider"]
    if providers[0] != "CPUExecutionProvider":
        providers.append("CPUExecutionProvider")
    sess = ort.InferenceSession(
        str(model.folder / "model.onnx"), sess_options=opts, providers=providers
    )
    name = sess.get_inputs()[0].name
    patch_sets = [patches_at(s.enhanced, s.patch_centres) for s in states if s.enhanced is not None]
    batches = [p[i : i + batch] for p in patch_sets for i in range(0, len(p), batch)]
    sess.run(None, {name: batches[0]})  # warm-up
    # Interleaved, best of N: the machine may be shared, load drifts between blocks.
    stage_s, raw_s, raw_one_s = [], [], []
    for _ in range(max(5, repeat)):
        t0 = time.perf_counter()
        for s in states:
            heat_stage(s)
        stage_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for b in batches:
            sess.run(None, {name: b})
        raw_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for p in patch_sets:
            sess.run(None, {name: p})  # one batch per view
        raw_one_s.append(time.perf_counter() - t0)
    # parity: the stage's probabilities are the raw session's
    ref = np.concatenate([sess.run(None, {name: p})[0] for p in patch_sets])
    got = np.concatenate([s.patch_probs for s in states])
    stage_rate = n_patches / min(stage_s)
    raw_rate = n_patches / min(raw_s)
    return {
        "provider": model.provider,
        "patches": n_patches,
        "patches_per_view": round(n_patches / len(states), 1),
        "batch_size": batch,
        "stage_patches_per_s": round(stage_rate, 1),
        "raw_ort_patches_per_s": round(raw_rate, 1),
        "raw_ort_one_batch_per_view_patches_per_s": round(n_patches / min(raw_one_s), 1),
        "stage_vs_raw": round(stage_rate / raw_rate, 3),
        "stage_ms_per_view": round(min(stage_s) / len(states) * 1000, 1),
        "max_abs_diff": float(np.max(np.abs(ref - got))) if len(ref) else 0.0,
    }


def main() -> None:
    repeat = int(os.environ.get("BENCH_MAMMO_REPEAT", "3"))
    settings = Settings()
    repo = ModelRepository(
        settings.models_dir,
        required=[],
        use_gpu=settings.use_gpu,
        intra_op_threads=settings.onnx_intra_op_threads,
        inter_op_threads=settings.onnx_inter_op_threads,
    )
    repo.load_all()
    pipe = MammoPipeline(repo, patch_batch_size=settings.patch_batch_size)
    images, source = _images()
    missing = [m for m in MammoPipeline.required_models if m not in repo]
    providers = sorted({m.provider or "?" for m in repo.models.values()})
    print(f"images: {source}; repeat {repeat}; cpus {os.cpu_count()}; providers {providers}")
    if missing:
        print(f"NOTE: models missing, heuristic fallbacks timed instead: {missing}")

    bench_views(pipe, images[:1], 1)  # warm-up
    view = bench_views(pipe, images, repeat)
    exam = bench_exams(pipe, images, repeat)
    patches = bench_patches(pipe, repo, images, repeat)

    print(f"\n{'stage':12}{'ms/view':>10}{'ms/4-view exam':>16}")
    for stage in [k for k in view if k != "total"]:
        print(f"{stage:12}{view[stage]:>10.1f}{exam.get(stage, 0.0):>16.1f}")
    print(f"{'combine':12}{'':>10}{exam['combine']:>16.1f}")
    print(f"{'total':12}{view['total']:>10.1f}{exam['wall']:>16.1f}  (exam: wall, via ExamManager)")
    print(f"events per 4-view exam: {exam['events_per_exam']}")
    if patches is None:
        print("\npatch throughput: no mammo-patch model, skipped")
    else:
        print(
            f"\npatch stage ({patches['provider']}, {patches['patches']} patches, "
            f"{patches['patches_per_view']}/view, batch {patches['batch_size']}):"
        )
        print(f"  heatmap stage      {patches['stage_patches_per_s']:>10.1f} patches/s")
        print(f"  raw ORT, same bs   {patches['raw_ort_patches_per_s']:>10.1f} patches/s")
        print(
            f"  raw ORT, 1 batch   {patches['raw_ort_one_batch_per_view_patches_per_s']:>10.1f}"
            " patches/s"
        )
        print(
            f"  stage / raw        {patches['stage_vs_raw']:>10.3f}"
            f"   (max |diff| {patches['max_abs_diff']:.2e})"
        )
        print(f"  per view: patches + inference + painting {patches['stage_ms_per_view']:.1f} ms")
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "images": source,
        "repeat": repeat,
        "models_missing": missing,
        "per_view_ms": view,
        "per_exam_ms": exam,
        "patches": patches,
    }
    (out / "mammo.json").write_text(json.dumps(record, indent=2))
