"""The yardsticks of bc_service's 4-view exam (``POST /v1/exams?stream=true``), in-process.

* :func:`in_process`: the service's own pipeline, built as the service builds it: per view
  ``decode_image`` → ``screen`` (the refusals run at submission) → ``run_view``; then
  ``combine`` and the result's JSON.
* :func:`minimal`: a one-thread user script: decode (OpenCV) → ``mammo-gate`` at 96 px →
  breast = pixels above a threshold → crop to its box → 512 px high → 64 px patches on a
  16 px grid inside the breast through ``mammo-patch`` (batches of 64) → the view model's 12
  statistics → ``mammo-view`` → JSON. Every committed model, on as many patches as the
  service's grid finds, and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.chest_paths import _session, decode_gray8
from shared.model import ModelRepository

Views = list[tuple[str, bytes]]


def in_process(settings: Any) -> Callable[[Views], bytes]:
    from bc_service.app import default_pipeline
    from bc_service.pipeline import ViewInput
    from shared.imaging import decode_image
    from shared.inference import model_repository

    models = model_repository(settings, settings.models_dir, ["mammo-gate", "mammo-patch"])
    models.load_all()
    pipeline = default_pipeline(models, settings)

    def run(views: Views) -> bytes:
        inputs = []
        for i, (tag, data) in enumerate(views):
            view = ViewInput(f"view-{i}", decode_image(data, settings.limits()), tag)  # type: ignore[arg-type]
            pipeline.screen(view)
            inputs.append(view)
        results = [pipeline.run_view(v, lambda _s, _f: None) for v in inputs]
        return pipeline.combine(results).model_dump_json().encode()

    return run


def minimal(models_dir: Path) -> Callable[[Views], bytes]:
    found = ModelRepository(models_dir).discover()
    gate, patch, view = (_session(found[n]) for n in ("mammo-gate", "mammo-patch", "mammo-view"))

    def one(data: bytes) -> dict[str, Any]:
        gray = decode_gray8(data)
        x = cv2.resize(gray, (96, 96), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        p_gate = float(gate.run(None, {"image": x[None, :, :, None]})[0][0, 0])
        breast = gray > 20
        rows, cols = np.flatnonzero(breast.any(axis=1)), np.flatnonzero(breast.any(axis=0))
        crop = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        f = 512.0 / crop.shape[0]
        work = cv2.resize(
            crop, (max(32, round(crop.shape[1] * f)), 512), interpolation=cv2.INTER_AREA
        )
        padded = np.pad(work, 32)
        yy, xx = np.mgrid[8 : work.shape[0] : 16, 8 : work.shape[1] : 16]
        keep = work[yy, xx] > 20
        centres = np.stack([yy[keep], xx[keep]], axis=1)
        windows = np.lib.stride_tricks.sliding_window_view(padded, (64, 64))
        probs = []
        for k in range(0, len(centres), 64):
            c = centres[k : k + 64]
            batch = windows[c[:, 0], c[:, 1]].astype(np.float32)[:, :, :, None] / 255.0
            probs.append(patch.run(None, {"patches": batch})[0])
        p = np.concatenate(probs) if probs else np.array([[1.0, 0.0, 0.0]], np.float32)
        feats = []
        for m in (p[:, 1], p[:, 2], p[:, 1] + p[:, 2]):
            top = np.sort(m)[::-1][:3]
            feats += [m.max(), top.mean(), m.mean(), (m > 0.5).mean()]
        out = view.run(None, {"features": np.asarray([feats], np.float32)})[0][0]
        return {"gate": p_gate, "patches": len(centres), "probs": [float(v) for v in out]}

    def run(views: Views) -> bytes:
        return json.dumps({tag: one(data) for tag, data in views}).encode()

    return run
