"""tb_service refuses to start when a card's preprocessing is not the pipeline it builds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tb_service.settings import MODELS_DIR
from tests.procs import exit_of


def test_tampered_card_preprocessing_stops_the_service(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(MODELS_DIR, models)
    card_path = models / "chest-abnormality" / "1" / "card.json"
    card = json.loads(card_path.read_text())
    (clahe,) = (s for s in card["preprocessing"]["steps"] if s["stage"] == "clahe")
    clahe["params"]["clip_limit"] = 3.0  # "trained" with another contrast enhancement
    card_path.write_text(json.dumps(card))
    env = {"IRMI_TB_MODELS_DIR": str(models), "IRMI_TB_USE_GPU": "false"}
    code, logs = exit_of("tb_service", env)
    assert code != 0
    assert "start-up refused: PreprocessingMismatch: chest-abnormality v1" in logs
    assert "'clip_limit': 3.0" in logs and "serving pipeline" in logs
