"""The mammography training's settings and where it writes: intermediate results in
``var/mammo-train/``, models with their cards, reports and plots in
``bc_service/models/<name>/1/``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.settings import REPO_ROOT

MODELS = REPO_ROOT / "bc_service" / "models"
WORK = REPO_ROOT / "var" / "mammo-train"
VERSION = "1"


@dataclass
class Config:
    data_dir: Path
    patch_epochs: int = 18
    fold_epochs: int = 8
    act_epochs: int = 4
    gate_epochs: int = 14
    per_lesion: int = 24
    normal_per_image: int = 12
    folds: int = 3
    max_chest: int = 350
    seed: int = 0


def model_folder(name: str) -> Path:
    return MODELS / name / VERSION


def save_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def load_json(path: Path) -> Any:
    """The saved result, or None when that step has not run."""
    return json.loads(path.read_text()) if path.exists() else None
