"""The typed model card: thresholds, refs, required preprocessing steps, the skew check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared.model import (
    ModelCard,
    ModelCardError,
    PreprocessingMismatch,
    Thresholds,
    check_preprocessing,
)
from shared.transforms import Compose, Transform

REPO = Path(__file__).resolve().parents[2]
CARDS = sorted(REPO.glob("*_service/models/*/*/card.json"))


class Scale(Transform):
    def __init__(self, factor: float = 2.0) -> None:
        self.factor = factor

    def __call__(self, data: Any) -> Any:
        return data * self.factor


def card(**over: Any) -> ModelCard:
    base: dict[str, Any] = {
        "name": "m",
        "version": "3",
        "sha256": "ab" * 32,
        "intended_use": "tests",
        "preprocessing": {"steps": Compose([Scale()]).describe()},
        "threshold": {"abnormal": 0.3, "rule": "sensitivity>=0.90 on val"},
    }
    return ModelCard.model_validate({**base, **over})


def test_threshold_for_and_ref() -> None:
    c = card()
    assert c.threshold_for("abnormal") == 0.3
    with pytest.raises(ModelCardError, match="no threshold 'chest'"):
        c.threshold_for("chest")
    with pytest.raises(ModelCardError):
        c.threshold_for("rule")  # text, not a threshold
    ref = c.ref()
    assert (ref.name, ref.version, ref.sha256) == ("m", "3", "ab" * 32)


@pytest.mark.parametrize(
    "bad",
    [{"abnormal": 1.5}, {"abnormal": "high"}, {"rule": 0.5}, {"a": -0.1}],
)
def test_thresholds_are_probabilities_and_rules_text(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        card(threshold=bad)


def test_card_reads_as_its_json() -> None:
    c = card(metrics={"split": "test", "test": {"auc": {"value": 0.9, "ci95": [0.8, 0.95]}}})
    assert isinstance(c.threshold, Thresholds) and isinstance(c.threshold, dict)
    assert c.metrics["test"]["auc"]["ci95"] == (0.8, 0.95) and "ci95" in c.metrics["test"]["auc"]
    assert c.preprocessing["steps"][0]["stage"] == "scale"
    dumped = c.model_dump(mode="json")
    assert dumped["threshold"] == {"abnormal": 0.3, "rule": "sensitivity>=0.90 on val"}


def test_preprocessing_steps_are_required() -> None:
    with pytest.raises(ValidationError, match="steps"):
        card(preprocessing={"pipeline": "x.y"})
    with pytest.raises(ValidationError, match="preprocessing"):
        ModelCard.model_validate({"name": "m", "version": "1", "sha256": "0", "intended_use": "t"})


def test_an_interval_needs_both_ends() -> None:
    with pytest.raises(ValidationError):
        card(metrics={"test": {"auc": {"value": 0.9, "ci95": [0.8]}}})


def test_check_preprocessing_names_the_difference() -> None:
    c = card()
    check_preprocessing(c, Compose([Scale()]))  # same step, same parameters
    with pytest.raises(PreprocessingMismatch) as info:
        check_preprocessing(c, Compose([Scale(3.0)]))
    message = str(info.value)
    assert "m v3: card preprocessing" in message and "'factor': 3.0" in message
    with pytest.raises(PreprocessingMismatch):
        check_preprocessing(c, Compose([Scale(), Scale()]))


@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.parent.parent.name)
def test_committed_cards_are_typed(path: Path) -> None:
    raw = json.loads(path.read_text())
    c = ModelCard.model_validate(raw)
    assert c.preprocessing.steps and c.intended_use and c.training_data.sources
    assert c.metrics.test and all(
        not isinstance(v, dict) or all(isinstance(x, int | float) for x in v.values())
        for v in c.metrics.test.values()
    )
    assert "ci_low" not in path.read_text()  # one interval shape: ci95 = [low, high]
