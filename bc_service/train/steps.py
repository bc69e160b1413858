"""The mammography training steps, in order: patch → gate → oof → view → activations.

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
}


def run(step: str, cfg: Config | None = None) -> None:
    """Run one step, or ``all`` of them in order; each step's time goes to timings.json."""
    cfg = cfg or Config(data_dir=default_data_dir())
    if not (cfg.data_dir / "mini-mias" / "labels.csv").exists():
        raise SystemExit(f"mini-mias not found under {cfg.data_dir}")
    order = list(STEPS) if step == "all" else [step]
    timings = load_json(WORK / "timings.json") or {}
    for name in order:
        start = time.perf_counter()
        log.info("step %s ...", name)
        STEPS[name](cfg)
        timings[name] = round(time.perf_counter() - start, 1)
        log.info("step %s done in %.1f s", name, timings[name])
        save_json(WORK / "timings.json", timings)
