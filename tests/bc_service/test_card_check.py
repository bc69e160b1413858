"""bc_service refuses to start when a card's preprocessing is not the stages it builds, and
the card migration reports hand-typed parameters that differ from the code's."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from bc_service.settings import MODELS_DIR
from tests.procs import REPO, exit_of

sys.path.insert(0, str(REPO / "scripts"))
import migrate_cards


def test_tampered_card_preprocessing_stops_the_service(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(MODELS_DIR, models)
    card_path = models / "mammo-patch" / "1" / "card.json"
    card = json.loads(card_path.read_text())
    (enhance,) = (s for s in card["preprocessing"]["steps"] if s["stage"] == "enhance")
    enhance["params"]["clip_limit"] = 3.0  # "trained" on patches with another CLAHE
    card_path.write_text(json.dumps(card))
    env = {"IRMI_BC_MODELS_DIR": str(models), "IRMI_BC_USE_GPU": "false"}
    code, logs = exit_of("bc_service", env)
    assert code != 0
    assert "start-up refused: PreprocessingMismatch: mammo-patch v1" in logs
    assert "'clip_limit': 3.0" in logs and "serving pipeline" in logs


def _old_patch_card(tmp_path: Path, clip_limit: float) -> Path:
    """The mammo-patch card as training wrote it before the migration (hand-typed CLAHE)."""
    card = json.loads((MODELS_DIR / "mammo-patch" / "1" / "card.json").read_text())
    card["preprocessing"] = {
        "version": "1",
        "stages": ["decode", "orientation", "crop", "enhance"],
        "patch": 64,
        "stride": 16,
        "clahe": {"clip_limit": clip_limit, "tiles": 8},
    }
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    return path


def test_migration_reports_a_clahe_drift(tmp_path: Path) -> None:
    _, problems = migrate_cards.migrate(_old_patch_card(tmp_path, 3.0))
    assert problems == ["preprocessing.clahe.clip_limit = 3.0 but enhance.clip_limit = 2.0"]


def test_migration_records_the_served_steps(tmp_path: Path) -> None:
    card, problems = migrate_cards.migrate(_old_patch_card(tmp_path, 2.0))
    assert problems == []
    steps = card["preprocessing"]["steps"]
    assert [s["stage"] for s in steps][-3:] == ["enhance", "centers", "heatmaps"]
    assert "clahe" not in card["preprocessing"]
