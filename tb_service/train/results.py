"""Where the chest training writes: intermediate results (JSON + predictions) in
``var/results``, models with their cards, reports and plots in
``tb_service/models/<name>/<version>/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shared.settings import REPO_ROOT

RESULTS = REPO_ROOT / "var" / "results"
MODELS = REPO_ROOT / "tb_service" / "models"
GATE_NAME, ABN_NAME, VERSION = "chest-gate", "chest-abnormality", "1"
GATE_PREDS = RESULTS / "gate_preds.npz"
ABN_PREDS = RESULTS / "abnormality_preds.npz"
# The robust screen (tb_service.train.robust): chest-abnormality/3, trained behind the
# detail_side step; /2, the same recipe without it, stays committed as the previous model.
ROBUST_VERSION = "3"
ROBUST_FOLDER = MODELS / ABN_NAME / ROBUST_VERSION
PREVIOUS_ROBUST_FOLDER = MODELS / ABN_NAME / "2"
ROBUST_PREDS = RESULTS / "robust_preds.npz"


def model_folder(name: str) -> Path:
    return MODELS / name / VERSION


def save_json(name: str, obj: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(obj, indent=2, default=_numpy_to_json))
    return path


def load_json(name: str) -> Any:
    """The saved result, or None when that command has not run."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _numpy_to_json(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)
