"""Patch-model heatmaps over prepared mammograms, computed by the serving pipeline's own
stages (so training sees what the service computes), and how well their peaks locate the
lesions. TensorFlow-free: a Keras model is only called."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bc_service.pipeline.stages import Centers, Heatmaps, Predictor, classifier_features
from bc_service.train import data as tdata
from bc_service.train import metrics as tm

STRIDE = 16  # patch centres every 16 working pixels, as the service runs


def onnx_predictor(path: Path) -> Predictor:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(x: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(sess.run(None, {name: x})[0], np.float32)

    return run


def keras_predictor(model: Any) -> Predictor:
    def run(x: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(model(x, training=False), np.float32)

    return run


@dataclass
class ViewHeatmaps:
    path: str
    features: NDArray[np.float32]  # the view model's input (classifier_features)
    benign: NDArray[np.float32]
    malignant: NDArray[np.float32]


def run_views(items: list[tdata.Prepared], predictor: Predictor) -> list[ViewHeatmaps]:
    """Stages centers → heatmaps on prepared cases, exactly as the service runs them."""
    out = []
    centers = Centers(stride=STRIDE)
    heatmaps = Heatmaps(predictor, stride=STRIDE, batch_size=256)
    for p in items:
        s = heatmaps(centers(p.state))
        out.append(
            ViewHeatmaps(
                p.case.path, classifier_features(s), s.heatmaps["benign"], s.heatmaps["malignant"]
            )
        )
    return out


def localisation(items: list[tdata.Prepared], views: list[ViewHeatmaps]) -> dict[str, Any]:
    """Share of located test lesions whose heatmap peak (the lesion's own class, and either
    class) lies within the lesion's radius; chance = the lesion's share of the breast."""
    hits_own, hits_any, chance = [], [], []
    rows = []
    for p, v in zip(items, views, strict=True):
        for (lx, ly, lr, severity), lesion in zip(p.lesions_work, p.case.lesions, strict=True):
            own = v.malignant if severity == 2 else v.benign
            hits = []
            for heat in (own, np.maximum(v.benign, v.malignant)):
                r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
                ox, oy = p.state.to_original(float(c), float(r))
                hits.append(bool((ox - lesion.x) ** 2 + (oy - lesion.y) ** 2 <= lesion.radius**2))
            hits_own.append(hits[0])
            hits_any.append(hits[1])
            yy, xx = np.nonzero(p.mask)
            inside = ((xx - lx) ** 2 + (yy - ly) ** 2 <= lr**2).sum()
            chance.append(float(inside) / max(len(yy), 1))
            rows.append({"path": p.case.path, "severity": lesion.severity, "hit_own": hits[0]})
    return {
        "n_lesions": len(hits_own),
        "peak_in_lesion_own_class": tm.proportion_ci(np.array(hits_own, float)),
        "peak_in_lesion_either_class": tm.proportion_ci(np.array(hits_any, float)),
        "chance_rate": round(float(np.mean(chance)), 4) if chance else None,
        "per_lesion": rows,
    }
