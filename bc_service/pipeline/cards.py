"""What a mammography model's card records of its preprocessing: the stages the service builds
to make that model's input, as their ``describe()`` gives them. Training writes it into the card;
``scripts/migrate_cards.py`` checks the committed cards against it; the service compares it at
start-up (``shared.model.check_preprocessing``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bc_service.pipeline.mammo import MammoPipeline
from bc_service.pipeline.stages import MammoState
from shared.model import ModelRepository
from shared.transforms import Compose

# Versions the served stages no longer make the input of: their cards record the stages they
# were trained and served with, and are kept as they are (the model's figures stay on record
# beside its successor's; the repository serves the highest version).
SUPERSEDED: dict[tuple[str, str], str] = {
    ("mammo-view", "1"): "model 1 read 12 patch-heatmap statistics; the classify stage now "
    "makes mammo-view/2's evidence features",
}


def mammo_steps(name: str) -> Compose[MammoState]:
    """The served stages up to the one that runs model ``name``."""
    # The stages' parameters do not depend on the loaded models: an empty repository will do.
    return MammoPipeline(ModelRepository(Path(__file__).parent / "no-models")).model_pipeline(name)


def served_preprocessing(name: str) -> dict[str, Any]:
    """The card's ``preprocessing`` entry for model ``name``."""
    return {
        "version": "1",
        "pipeline": f"bc_service.pipeline.MammoPipeline.model_pipeline({name!r})",
        "steps": mammo_steps(name).describe(),
    }
