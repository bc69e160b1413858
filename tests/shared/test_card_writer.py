"""Writing a trained model's card: sha256 and time recorded, contract checked."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.clock import timestamp
from shared.model import read_card
from shared.train.card_writer import card_tensor, write_card


def test_card_tensor_entries() -> None:
    assert card_tensor("image", ["N", 64, 64, 1], "values 0..1") == {
        "name": "image",
        "shape": ["N", 64, 64, 1],
        "dtype": "float32",
        "description": "values 0..1",
    }
    assert card_tensor("probs", ["N", 2]) == {
        "name": "probs",
        "shape": ["N", 2],
        "dtype": "float32",
    }


def test_write_card_records_sha256_and_time(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not really onnx")
    card = {
        "name": "m",
        "version": "1",
        "inputs": [card_tensor("x", ["N", 3])],
        "preprocessing": {"steps": [{"stage": "resize", "params": {"size": 3}}]},
        "intended_use": "a test",
    }
    write_card(tmp_path, card)
    written = json.loads((tmp_path / "card.json").read_text())
    assert written["sha256"] == hashlib.sha256(b"not really onnx").hexdigest()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", written["created"])
    assert read_card(tmp_path).inputs[0].name == "x"


def test_write_card_refuses_a_card_the_service_could_not_read(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(ValidationError):
        write_card(tmp_path, {"name": "m"})  # no version
    assert not (tmp_path / "card.json").exists()


def test_timestamp_is_utc_seconds() -> None:
    at = datetime(2026, 1, 31, 12, 0, 5, 999, tzinfo=UTC)
    assert timestamp(at) == "2026-01-31T12:00:05Z"
    assert timestamp().endswith("Z")
