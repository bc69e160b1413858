"""The operating-point contract: the card's ``operating_point`` section, its migration onto the
committed chest screen's card, categorize (one rule) and the score map's shape."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared.contracts.screening import (
    Category,
    ReliabilityReason,
    ScoreMap,
    assess_reliability,
    categorize,
    category_at,
)
from shared.model import ModelCard, ModelCardError, file_sha256, read_card
from shared.train.card_writer import operating_point_section

REPO = Path(__file__).resolve().parents[2]
CHEST = REPO / "tb_service" / "models" / "chest-abnormality" / "1"


def _card(**over: Any) -> ModelCard:
    base: dict[str, Any] = {
        "name": "m",
        "version": "2",
        "sha256": "ab" * 32,
        "preprocessing": {"steps": []},
        "intended_use": "tests",
        "threshold": {"abnormal": 0.25},
    }
    return ModelCard.model_validate({**base, **over})


SUMMARY = {
    "sensitivity": {"value": 0.9, "ci95": [0.85, 0.94]},
    "specificity": {"value": 0.75, "ci95": [0.7, 0.8]},
    "counts": {"tp": 90.0, "fn": 10.0, "tn": 150.0, "fp": 50.0},
}


def test_section_from_threshold_and_counts_and_the_contract_point() -> None:
    section = operating_point_section(0.25, SUMMARY, "val split of x")
    assert section == {
        "score_threshold": 25.0,
        "sensitivity": {"value": 0.9, "ci95": [0.85, 0.94], "n": 100},
        "specificity": {"value": 0.75, "ci95": [0.7, 0.8], "n": 200},
        "measured_on": "val split of x",
    }
    card = _card(operating_point=section)
    point = card.card_point()
    assert point.source == "card" and point.model == card.ref() and point.run_id is None
    assert point.score_threshold == 25.0 and point.specificity.n == 200
    assert point.measured_on == "val split of x"


def test_card_without_a_point_says_so_and_a_bad_section_is_refused() -> None:
    with pytest.raises(ModelCardError, match="no operating_point"):
        _card().card_point()
    good = operating_point_section(0.25, SUMMARY, "val")
    for bad in (
        {**good, "score_threshold": 0.25 * 1000},  # a probability x 1000 is off the scale
        {**good, "sensitivity": {"value": 1.2, "ci95": [0.9, 1.0], "n": 3}},
        {**good, "measured_on": ""},  # where the rates come from must be said
    ):
        with pytest.raises(ValidationError):
            _card(operating_point=bad)


def test_committed_chest_card_point_is_its_threshold_and_test_figures() -> None:
    card = read_card(CHEST)
    raw = json.loads((CHEST / "card.json").read_text())
    test, counts = raw["metrics"]["test"], raw["metrics"]["test"]["counts"]
    point = card.card_point()
    assert point.score_threshold == pytest.approx(100 * raw["threshold"]["abnormal"], abs=1e-4)
    assert point.sensitivity.value == test["sensitivity"]["value"]
    assert list(point.sensitivity.ci95) == test["sensitivity"]["ci95"]
    assert point.sensitivity.n == counts["tp"] + counts["fn"] == 333
    assert point.specificity.n == counts["tn"] + counts["fp"] == 182
    assert "in-distribution test split" in point.measured_on
    assert "nih-cxr14" in point.measured_on and "kermany-pediatric" in point.measured_on
    assert file_sha256(CHEST / "model.onnx") == card.sha256  # the model file is untouched


def test_migration_check_finds_every_card_migrated() -> None:
    out = subprocess.run(
        [sys.executable, "scripts/migrate_cards.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert lines and all(line.startswith("ok: ") for line in lines), out.stdout


def test_categorize_one_rule_outside_wins() -> None:
    point = _card(operating_point=operating_point_section(0.25, SUMMARY, "val")).card_point()
    inside = assess_reliability([])
    outside = assess_reliability([ReliabilityReason.mirrored])
    assert categorize(25.0, point, inside) == Category.review_recommended  # at = flagged
    assert categorize(24.99, point, inside) == Category.no_finding_flagged
    assert categorize(24.99, point) == Category.no_finding_flagged
    for score in (0.0, 24.99, 25.0, 100.0):
        assert categorize(score, point, outside) == Category.outside_population
        assert category_at(score, 25.0, outside) == Category.outside_population
        assert category_at(score, 25.0, inside) == categorize(score, point, inside)
    far = assess_reliability([], distance=1.5)
    assert categorize(3.0, point, far) == Category.outside_population


def test_score_map_is_a_rectangular_grid_in_unit_range() -> None:
    box = {"x0": 0, "y0": 0, "x1": 8, "y1": 8}
    ok = ScoreMap(values=[[0.0, 1.0], [0.5, 0.25]], box=box, image_width=8, image_height=8)
    assert ok.values[0][1] == 1.0
    for values in ([[0.0, 1.0], [0.5]], [[1.5]], [[-0.1]], [[math.nan]], []):
        with pytest.raises(ValidationError):
            ScoreMap(values=values, box=box, image_width=8, image_height=8)
