"""Film orientation: is the upload rotated or mirrored? (chest-orientation model, served)

The orientation network classifies the 8 dihedral transforms of a film from the validity
gate's 64 px input. Transform ``t`` (0..7) means ``mirrored = t // 4`` and ``k = t % 4``::

    uploaded = rot90_ccw(fliplr(upright) if mirrored else upright, k)

Serving (:func:`orient`) turns a film that is confidently rotated upright
(``np.rot90(pixels, -k)``, i.e. ``90 * k`` degrees clockwise) before the gate and the screen
see it; the crop box and the heatmap are mapped back onto the uploaded orientation
(:func:`box_to_uploaded`, :func:`levels_to_uploaded`), so a response stays in the uploaded
image's coordinates. A film that looks mirrored is flagged, never "corrected": dextrocardia
(situs inversus) looks exactly like a mirrored film. A film whose rotation the network is not
sure of raises ``orientation_uncertain``; both raise the reliability flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shared.contracts.screening import ReliabilityReason
from shared.imaging import DecodedImage
from shared.model import OnnxModel

Box = tuple[int, int, int, int]

N_TRANSFORMS = 8
LABELS = [f"{'mirror_' if t >= 4 else ''}rot{90 * (t % 4)}" for t in range(N_TRANSFORMS)]
"""Class names of the network's outputs, in order (rotation counter-clockwise)."""


def apply_transform(pixels: NDArray[Any], t: int) -> NDArray[Any]:
    """Transform ``t`` of an upright image (what the network learns to recognise)."""
    k, mirrored = t % 4, t >= 4
    px = np.fliplr(pixels) if mirrored else pixels
    return np.ascontiguousarray(np.rot90(px, k))


def turn_upright(pixels: NDArray[Any], k: int) -> NDArray[Any]:
    """Undo a counter-clockwise rotation by ``k`` quarter turns (turn ``90 k`` deg clockwise)."""
    return np.ascontiguousarray(np.rot90(pixels, -k)) if k % 4 else pixels


def rot90_box(box: Box, size: tuple[int, int]) -> tuple[Box, tuple[int, int]]:
    """A box (x0, y0, x1, y1, exclusive end) in an image of ``size`` = (w, h), and that size,
    after ``np.rot90`` (one counter-clockwise quarter turn)."""
    x0, y0, x1, y1 = box
    w, h = size
    return (y0, w - x1, y1, w - x0), (h, w)


def box_to_uploaded(box: Box, upright_size: tuple[int, int], k: int) -> Box:
    """A box found on the upright film back onto the upload (which is the upright film
    rotated ``k`` quarter turns counter-clockwise)."""
    size = upright_size
    for _ in range(k % 4):
        box, size = rot90_box(box, size)
    return box


def levels_to_uploaded(levels: NDArray[Any], k: int) -> NDArray[Any]:
    """An (H, W) map rendered on the upright film, turned onto the upload."""
    return np.ascontiguousarray(np.rot90(levels, k % 4)) if k % 4 else levels


@dataclass(frozen=True)
class Thresholds:
    """How sure the network must be: ``rotation`` on the summed probability of the chosen
    rotation (below: orientation_uncertain), ``mirrored`` on the summed probability of the
    four mirrored transforms (at or above: mirrored)."""

    rotation: float
    mirrored: float


@dataclass(frozen=True)
class Decision:
    """What the orientation network says of one film."""

    k: int  # quarter turns counter-clockwise the upload is from upright (0 when unsure)
    p_rotation: float  # the chosen rotation's probability (mirrored or not)
    p_mirrored: float
    uncertain: bool
    mirrored: bool
    reasons: list[ReliabilityReason] = field(default_factory=list)

    @property
    def rotation_applied_deg(self) -> int:
        """Degrees clockwise the upload is turned before scoring (0, 90, 180, 270)."""
        return 90 * self.k


def decide(probs: NDArray[Any], thresholds: Thresholds) -> Decision:
    """The decision from the network's 8 probabilities. An uncertain rotation is not applied
    (the film is scored as uploaded and flagged). A non-finite output is uncertain."""
    p = np.nan_to_num(np.asarray(probs, np.float64).reshape(-1), nan=0.0)
    if p.size != N_TRANSFORMS or not np.isfinite(p).all() or p.sum() <= 0:
        return Decision(0, 0.0, 0.0, True, False, [ReliabilityReason.orientation_uncertain])
    p = p / p.sum()
    p_rot = p[:4] + p[4:]
    k = int(np.argmax(p_rot))
    p_mirror = float(p[4:].sum())
    uncertain = float(p_rot[k]) < thresholds.rotation
    mirrored = p_mirror >= thresholds.mirrored
    reasons = []
    if uncertain:
        reasons.append(ReliabilityReason.orientation_uncertain)
    if mirrored:
        reasons.append(ReliabilityReason.mirrored)
    return Decision(
        0 if uncertain else k,
        round(float(p_rot[k]), 6),
        round(p_mirror, 6),
        uncertain,
        mirrored,
        reasons,
    )


def upright_image(img: DecodedImage, k: int) -> DecodedImage:
    """The decoded upload turned upright (pixels only; range and metadata kept)."""
    if k % 4 == 0:
        return img
    return DecodedImage(
        turn_upright(img.pixels, k), img.format, img.bits_stored, img.value_range, dict(img.meta)
    )


class Orienter:
    """The loaded chest-orientation model with its card's thresholds."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.thresholds = Thresholds(
            rotation=model.card.threshold_for("rotation"),
            mirrored=model.card.threshold_for("mirrored"),
        )

    def assess(self, gate_image: NDArray[np.float32]) -> Decision:
        """One film's decision from its gate input (S, S, 1), values 0..1."""
        x = np.asarray(gate_image, np.float32)[None]
        probs = self.model.run_single_input(x)["probs"][0]
        return decide(probs, self.thresholds)
