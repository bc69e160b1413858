"""Mammography pipeline: time per view and per 4-view exam by stage, and the patch stage's
throughput against raw ONNX Runtime on the same patches, in the same run.

Uses mini-mias test images when ../shared/data is present, synthetic phantoms otherwise
(with the gate off, since a phantom is not a mammogram).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from bc_service.pipeline import MammoPipeline, MammoState, ViewInput
from bc_service.pipeline.features import patches_at
from bc_service.pipeline.timing import time_view
from bc_service.settings import MODELS_DIR
from shared.imaging import decode_image
from shared.model import ModelRepository
from shared.settings import default_data_dir


def _inputs(n: int) -> tuple[list[bytes], bool]:
    mias = default_data_dir() / "mini-mias"
    if (mias / "splits.csv").exists():
        with (mias / "splits.csv").open() as fh:
            names = [r["path"] for r in csv.DictReader(fh) if r["split"] == "test"][:n]
        return [(mias / p).read_bytes() for p in names], True
    from tests.imagegen import mammo_phantom, png_bytes

    sides = ["left", "right"]
    return [
        png_bytes(mammo_phantom(1024, 832, chest_wall=sides[i % 2], seed=i)) for i in range(n)
    ], False


def main(n_views: int = 12) -> None:
    repo = ModelRepository(MODELS_DIR, required=MammoPipeline.required_models, use_gpu=False)
    repo.load_all()
    datas, real = _inputs(n_views)
    pipe = MammoPipeline(repo, gate=real)
    per_stage: dict[str, list[float]] = {}
    totals: list[float] = []
    states: list[MammoState] = []
    for data in datas:
        total_ms, img = time_view(pipe, data, per_stage)
        totals.append(total_ms)
        states.append(pipe.run_state(ViewInput("view-0", img, None))[0])
    # 4-view exam = 4 views + combine, sequential on one worker.
    exam_ms, exam_cpu_ms, combine_ms = [], [], []
    for i in range(0, len(datas) - 3, 4):
        t0, c0 = time.perf_counter(), time.process_time()
        views = [
            pipe.run_view(ViewInput(f"view-{j}", decode_image(d), None), lambda a, b: None)
            for j, d in enumerate(datas[i : i + 4])
        ]
        t1 = time.perf_counter()
        pipe.combine(views)
        combine_ms.append((time.perf_counter() - t1) * 1000)
        exam_ms.append((time.perf_counter() - t0) * 1000)
        exam_cpu_ms.append((time.process_time() - c0) * 1000)
    # Patch stage vs raw ONNX Runtime on the same patches.
    patch = repo.get("mammo-patch")
    all_p = np.concatenate(
        [patches_at(s.enhanced, s.patch_centres) for s in states if s.enhanced is not None]
    )
    heat_ms = float(np.sum(per_stage["heatmaps"]))
    t0 = time.perf_counter()
    for i in range(0, len(all_p), 64):
        patch.run_single_input(all_p[i : i + 64])
    raw_ms = (time.perf_counter() - t0) * 1000
    out = {
        "inputs": "mini-mias test" if real else "synthetic phantoms 1024x832",
        "n_views": len(datas),
        "patches_per_view": round(len(all_p) / len(states), 1),
        "median_ms_by_stage": {k: round(float(np.median(v)), 1) for k, v in per_stage.items()},
        "median_view_ms": round(float(np.median(totals)), 1),
        "median_exam_4_views_ms": round(float(np.median(exam_ms)), 1) if exam_ms else None,
        # CPU seconds of the whole process (every ONNX Runtime thread included).
        "median_exam_4_views_cpu_ms": round(float(np.median(exam_cpu_ms)), 1)
        if exam_cpu_ms
        else None,
        "median_combine_ms": round(float(np.median(combine_ms)), 1) if combine_ms else None,
        "patch_stage_patches_per_s": round(len(all_p) / (heat_ms / 1000), 1),
        "raw_onnxruntime_patches_per_s": round(len(all_p) / (raw_ms / 1000), 1),
        "provider": patch.provider,
    }
    print(json.dumps(out, indent=2))
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "mammo_pipeline.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
