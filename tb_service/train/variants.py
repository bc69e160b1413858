"""The robust-training recipes the search compares (TensorFlow-free)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """One recipe of the search. ``members``: an ensemble of other variants (not trained)."""

    name: str
    description: str
    widths: tuple[int, ...] = (24, 48, 96)
    adversary: float = 0.0  # weight of the reversed source gradient (0 = no adversary)
    augment: bool = True
    members: tuple[str, ...] = ()


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "A",
            "v1 network (VGG 24-48-96) + balanced source x label batches + acquisition "
            "augmentation",
        ),
        Variant(
            "B",
            "A + adversarial source head behind a gradient reversal (weight 0.3)",
            adversary=0.3,
        ),
        Variant("C", "A with a smaller network (VGG 16-32-64)", widths=(16, 32, 64)),
        Variant(
            "D", "ensemble of A and C in one ONNX graph (mean probability)", members=("A", "C")
        ),
    )
}
