"""The version-2 steps: ``screen`` (mammo-view/2) and ``density`` (mammo-density/1), both on
the patient-level cross-validation cohort; results saved in ``var/mammo-train/``."""

from __future__ import annotations

import logging
from typing import Any

from bc_service.train.cohort import load_cohort
from bc_service.train.density import density_search
from bc_service.train.detector import detector_search
from bc_service.train.publish_screen import (
    export_density,
    export_screen,
    write_density,
    write_screen,
)
from bc_service.train.screen import screen_search
from bc_service.train.workspace import MODELS, WORK, Config, save_json

log = logging.getLogger("irmi.bc.train")


def step_screen(cfg: Config) -> dict[str, Any]:
    cohort = load_cohort(cfg.data_dir)
    res = screen_search(cohort, cfg.data_dir)
    res["detector_search"] = detector_search(cohort, res["C"]["bilateral"])
    save_json(WORK / "screen.json", res)
    folder = MODELS / "mammo-view" / "2"
    parity = export_screen(res, folder)
    write_screen(res, parity, folder)
    return res


def step_density(cfg: Config) -> dict[str, Any]:
    res = density_search(load_cohort(cfg.data_dir))
    save_json(WORK / "density.json", res)
    folder = MODELS / "mammo-density" / "1"
    parity = export_density(res, folder)
    write_density(res, parity, folder)
    return res
