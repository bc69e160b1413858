"""The card migration (scripts/migrate_cards.py) reports hand-typed mammography parameters
that differ from the code's, and records the served stages otherwise."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bc_service.settings import MODELS_DIR
from tests.procs import REPO

sys.path.insert(0, str(REPO / "scripts"))
import migrate_cards


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
