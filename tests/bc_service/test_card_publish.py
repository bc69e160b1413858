"""What mammography training writes is a card bc_service loads: the typed card's shape, and the
preprocessing of the stages the service builds (no train/serve skew, nothing hand-typed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bc_service.pipeline.cards import mammo_steps
from bc_service.train.publish import _write_typed, served_preprocessing
from shared.model import ModelCard, check_preprocessing


def _card(name: str) -> dict[str, object]:
    """A card as the writers build it: evaluation estimates carry ci_low/ci_high too."""
    estimate = {"value": 0.71, "ci_low": 0.6, "ci_high": 0.8, "ci95": [0.6, 0.8], "n": 64}
    return {
        "name": name,
        "version": "1",
        "inputs": [],
        "outputs": [],
        "preprocessing": served_preprocessing(name),
        "intended_use": "a test",
        "metrics": {
            "test": {"auc": estimate, "n_patches": 880, "per_class": {"normal": 40}},
            "val": {"auc": estimate},
        },
        "threshold": {
            "benign": {"value": 0.4, "how": "Youden J on val"},
            "malignant": {"value": 0.6, "how": "Youden J on val"},
            "label_rule": "malignant first",
        },
    }


@pytest.mark.parametrize("name", ["mammo-gate", "mammo-patch", "mammo-view"])
def test_written_card_is_typed_and_matches_the_served_stages(name: str, tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not a real model, only hashed")
    _write_typed(tmp_path, _card(name))
    card = ModelCard.model_validate(json.loads((tmp_path / "card.json").read_text()))
    check_preprocessing(card, mammo_steps(name))  # what bc_service checks at start-up
    assert card.threshold_for("benign") == 0.4 and card.threshold_for("malignant") == 0.6
    assert card.threshold["rule"] == "Youden J on val"
    assert card.metrics.test["auc"]["ci95"] == (0.6, 0.8)
    assert "n_patches" not in card.metrics.test  # a count, not a figure: kept in test_details
    assert card.metrics["test_details"]["n_patches"] == 880
