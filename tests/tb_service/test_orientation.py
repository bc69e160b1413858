"""tb_service.orientation: the dihedral transforms, the decision, and mapping the crop box and
the heatmap found on the upright film back onto the upload as sent."""

from __future__ import annotations

import numpy as np
import pytest

from shared.contracts.screening import ReliabilityReason
from tb_service.heatmap import cam_levels, heatmap_png
from tb_service.orientation import (
    LABELS,
    N_TRANSFORMS,
    Thresholds,
    apply_transform,
    box_to_uploaded,
    decide,
    levels_to_uploaded,
    turn_upright,
)
from tests.tb_service.svc_helpers import decode_heatmap

TH = Thresholds(rotation=0.8, mirrored=0.6)


def _probs(t: int, p: float = 0.97) -> np.ndarray:
    out = np.full(N_TRANSFORMS, (1.0 - p) / (N_TRANSFORMS - 1))
    out[t] = p
    return out


def test_labels_name_the_transforms() -> None:
    assert LABELS == [
        "rot0",
        "rot90",
        "rot180",
        "rot270",
        "mirror_rot0",
        "mirror_rot90",
        "mirror_rot180",
        "mirror_rot270",
    ]


@pytest.mark.parametrize("t", range(N_TRANSFORMS))
def test_turning_upright_undoes_the_rotation_and_keeps_the_mirror(t: int) -> None:
    img = np.arange(6 * 4).reshape(6, 4)
    up = turn_upright(apply_transform(img, t), t % 4)
    assert np.array_equal(up, np.fliplr(img) if t >= 4 else img)


@pytest.mark.parametrize("k", range(4))
def test_box_maps_back_onto_the_upload(k: int) -> None:
    """A box drawn on the upright film covers the same pixels of the rotated upload."""
    h, w = 30, 20
    box = (3, 5, 12, 21)
    mask = np.zeros((h, w), bool)
    mask[box[1] : box[3], box[0] : box[2]] = True
    uploaded = np.rot90(mask, k)
    x0, y0, x1, y1 = box_to_uploaded(box, (w, h), k)
    expected = np.zeros_like(uploaded)
    expected[y0:y1, x0:x1] = True
    assert np.array_equal(uploaded, expected)


@pytest.mark.parametrize("k", range(4))
def test_heatmap_is_rendered_on_the_upload(k: int) -> None:
    rng = np.random.default_rng(k)
    cam = rng.random((8, 8)).astype(np.float32)
    box, size = (10, 12, 60, 70), (80, 100)  # upright film is 80 x 100
    upright = cam_levels(cam, box, size)
    data, width, height = heatmap_png(cam, box, size, turns=k)
    assert (width, height) == ((80, 100) if k % 2 == 0 else (100, 80))
    rgba = decode_heatmap({"media_type": "image/png", "base64": _b64(data)})
    assert rgba.shape[:2] == (height, width)
    # Alpha follows the levels: transparent exactly where the turned map is zero.
    turned = levels_to_uploaded(upright, k)
    assert np.array_equal(rgba[..., 3] == 0, turned == 0)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def test_confident_upright_film_is_left_alone() -> None:
    d = decide(_probs(0), TH)
    assert (d.k, d.uncertain, d.mirrored, d.reasons) == (0, False, False, [])
    assert d.rotation_applied_deg == 0


@pytest.mark.parametrize("t", [1, 2, 3])
def test_confident_rotation_is_undone(t: int) -> None:
    d = decide(_probs(t), TH)
    assert d.k == t and d.rotation_applied_deg == 90 * t and not d.reasons


@pytest.mark.parametrize("t", [4, 5, 6, 7])
def test_mirror_is_flagged_not_corrected(t: int) -> None:
    d = decide(_probs(t), TH)
    assert d.mirrored and d.k == t % 4
    assert d.reasons == [ReliabilityReason.mirrored]


def test_rotation_sums_over_mirrored_and_not() -> None:
    """0.45 rot90 + 0.45 mirror_rot90: the rotation is sure (0.9), the mirror is not."""
    p = np.full(N_TRANSFORMS, 0.1 / 6)
    p[1], p[5] = 0.45, 0.45
    d = decide(p, TH)
    assert d.k == 1 and not d.uncertain and not d.mirrored


def test_uncertain_rotation_is_not_applied_and_flagged() -> None:
    p = np.zeros(N_TRANSFORMS)
    p[0], p[2] = 0.5, 0.5
    d = decide(p, TH)
    assert d.uncertain and d.k == 0
    assert d.reasons == [ReliabilityReason.orientation_uncertain]


def test_non_finite_output_is_uncertain() -> None:
    d = decide(np.full(N_TRANSFORMS, np.nan), TH)
    assert d.uncertain and d.k == 0 and ReliabilityReason.orientation_uncertain in d.reasons


@pytest.mark.parametrize("k", [1, 3])
def test_capped_heatmap_is_turned_too(k: int) -> None:
    """With heatmap_max_side the overlay is rendered small, then turned onto the upload."""
    cam = np.ones((8, 8), np.float32)
    upright, w, h = heatmap_png(cam, (10, 12, 60, 70), (80, 100), max_side=50)
    turned, tw, th = heatmap_png(cam, (10, 12, 60, 70), (80, 100), max_side=50, turns=k)
    assert (w, h) == (40, 50) and (tw, th) == (50, 40)
    a = decode_heatmap({"media_type": "image/png", "base64": _b64(upright)})
    b = decode_heatmap({"media_type": "image/png", "base64": _b64(turned)})
    assert np.array_equal(b, np.rot90(a, k))
