"""The tried pixel detector's training targets (bc_service.train.detector): lesion-centred
positives weighted by how many radii they lie within, no negatives near a lesion, nothing
from an abnormal image without a located lesion."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from bc_service.pipeline import evidence as ev
from bc_service.train.detector import _targets


def _case(label: str, lesions: list[tuple[float, float, float, int]]) -> SimpleNamespace:
    return SimpleNamespace(case=SimpleNamespace(label=label), lesions_work=lesions)


def test_positives_are_lesion_centred_at_several_radii() -> None:
    pts = np.array([[100, 100], [100, 108], [100, 118], [100, 140], [300, 300]], np.int64)
    # A lesion at working (x, y) = (200, 200), radius 40: at half resolution (100, 100), r 20.
    assert ev.HALF == 0.5
    pos, neg_ok = _targets(_case("benign", [(200.0, 200.0, 40.0, 1)]), pts)
    assert pos.tolist() == [3.0, 2.0, 1.0, 0.0, 0.0]  # centre, half radius, whole radius
    assert neg_ok.tolist() == [False, False, False, True, True]  # 1.5 r + 4 = 34 px clear


def test_normal_images_give_negatives_only_and_spread_lesions_nothing() -> None:
    pts = np.array([[10, 10], [50, 50]], np.int64)
    pos, neg_ok = _targets(_case("normal", []), pts)
    assert not pos.any() and neg_ok.all()
    pos, neg_ok = _targets(_case("malignant", []), pts)  # calcifications spread, no centre
    assert not pos.any() and not neg_ok.any()
