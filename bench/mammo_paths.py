"""The yardsticks of bc_service's 4-view exam (``POST /v1/exams?stream=true``), in-process.

* :func:`in_process`: the service's own pipeline, built as the service builds it: per view
  ``decode_image`` → ``screen`` (the refusals run at submission) → ``run_view``; then
  ``combine`` and the result's JSON.
* :func:`minimal`: a one-thread user script: decode (OpenCV) → ``mammo-gate`` at 96 px →
  breast = pixels above a threshold → crop to its box → 512 px high → CLAHE → 64 px patches
  on a 16 px grid inside the breast through ``mammo-patch`` (batches of 64, the overlay's
  map) → the breast's evidence statistics (``bc_service.pipeline.evidence``, the models'
  own input definition) → ``mammo-view`` alone and with the same view of the other breast,
  and ``mammo-density`` → JSON. Every committed model in each pass the service makes, on as
  many patches as the service's grid finds, and nothing else (no orientation, pectoral
  muscle, map rendering or overlay).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from bc_service.pipeline import evidence
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
    gate, patch, view, density = (
        _session(found[n]) for n in ("mammo-gate", "mammo-patch", "mammo-view", "mammo-density")
    )
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))

    def prepare(data: bytes) -> tuple[float, int, evidence.BreastMaps]:
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
        mask = work > 20
        enhanced = clahe.apply(work)
        enhanced[~mask] = 0
        # The overlay's patch map: 64 px patches on a 16 px grid inside the breast.
        padded = np.pad(enhanced, 32)
        yy, xx = np.mgrid[8 : work.shape[0] : 16, 8 : work.shape[1] : 16]
        keep = mask[yy, xx]
        centres = np.stack([yy[keep], xx[keep]], axis=1)
        windows = np.lib.stride_tricks.sliding_window_view(padded, (64, 64))
        for k in range(0, len(centres), 64):
            c = centres[k : k + 64]
            batch = windows[c[:, 0], c[:, 1]].astype(np.float32)[:, :, :, None] / 255.0
            patch.run(None, {"patches": batch})
        return p_gate, len(centres), evidence.breast_maps(work, mask, enhanced)

    def probs(session: Any, features: NDArray[np.float32]) -> list[float]:
        return [float(v) for v in session.run(None, {"features": features[None, :]})[0][0]]

    def run(views: Views) -> bytes:
        prepared = {tag: prepare(data) for tag, data in views}
        out = {}
        for tag, (p_gate, n, maps) in prepared.items():
            # The same view of the other breast ("L-CC" -> "R-CC"), when the exam has it.
            other = prepared.get({"L": "R", "R": "L"}[tag[0]] + tag[1:])
            out[tag] = {
                "gate": p_gate,
                "patches": n,
                "view": probs(view, evidence.view_inputs(maps, None)),
                "bilateral": probs(view, evidence.view_inputs(maps, other[2])) if other else None,
                "density": probs(density, evidence.density_inputs(maps)),
            }
        return json.dumps(out).encode()

    return run
