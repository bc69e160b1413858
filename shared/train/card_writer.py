"""Writing a trained model's ``card.json`` (training side): the entries of its inputs and
outputs, and the card itself, checked against :class:`shared.model.ModelCard`, the contract
the services read, with the ONNX file's sha256 and the time it was written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.clock import timestamp
from shared.model import ModelCard, TensorSpec, file_sha256


def card_tensor(name: str, shape: list[int | str | None], description: str = "") -> dict[str, Any]:
    """A float32 input or output entry (without a description when none is given)."""
    spec = TensorSpec(name=name, shape=shape, dtype="float32", description=description)
    return spec.model_dump(exclude={"description"} if not description else set())


def write_card(folder: Path, card: dict[str, Any]) -> None:
    """Record ``sha256`` of ``folder/model.onnx`` and ``created`` in ``card``, check it, and
    write ``folder/card.json``."""
    card["sha256"] = file_sha256(folder / "model.onnx")
    card["created"] = timestamp()
    ModelCard.model_validate(card)
    (folder / "card.json").write_text(json.dumps(card, indent=2, default=float) + "\n")
