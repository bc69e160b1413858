"""The mammography training steps: model 1's patch → gate → oof → view → activations
(``all``), and version 2's screen → density (``v2``).

Intermediate results go to ``var/mammo-train/``; models, cards, reports and plots to
``bc_service/models/<name>/1/`` (:mod:`bc_service.train.workspace`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from bc_service.train.gate import step_gate
from bc_service.train.patch import step_activations, step_patch
from bc_service.train.v2 import step_density, step_screen
from bc_service.train.view import step_oof, step_view
from bc_service.train.workspace import WORK, Config, load_json, save_json
from shared.settings import default_data_dir

log = logging.getLogger("irmi.bc.train")

STEPS: dict[str, Callable[[Config], dict[str, Any]]] = {
    "patch": step_patch,
    "gate": step_gate,
    "oof": step_oof,
    "view": step_view,
    "activations": step_activations,
    "screen": step_screen,
    "density": step_density,
}
# ``all``: model 1's steps (mammo-gate/1, mammo-patch/1, mammo-view/1); ``v2``: the screen
# and the density model on the patient-level cross-validation cohort.
GROUPS = {"all": ["patch", "gate", "oof", "view", "activations"], "v2": ["screen", "density"]}


def run(step: str, cfg: Config | None = None) -> None:
    """Run one step, or ``all`` of them in order; each step's time goes to timings.json."""
    cfg = cfg or Config(data_dir=default_data_dir())
    if not (cfg.data_dir / "mini-mias" / "labels.csv").exists():
        raise SystemExit(f"mini-mias not found under {cfg.data_dir}")
    order = GROUPS.get(step, [step])
    timings = load_json(WORK / "timings.json") or {}
    for name in order:
        start = time.perf_counter()
        log.info("step %s ...", name)
        STEPS[name](cfg)
        timings[name] = round(time.perf_counter() - start, 1)
        log.info("step %s done in %.1f s", name, timings[name])
        save_json(WORK / "timings.json", timings)
