"""The lung mask's plausibility rules and the crop box with its margin, on synthetic masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tb_service.lungmask import (
    LungMargin,
    LungMaskLimits,
    box_with_margin,
    check_lung_mask,
    scale_box,
)

H, W = 200, 240


def lungs(
    left: tuple[int, int, int, int] = (70, 95, 40, 65),
    right: tuple[int, int, int, int] | None = (170, 95, 44, 68),
) -> np.ndarray:
    """A mask with an ellipse per lung, each (cx, cy, half-width, half-height)."""
    m = np.zeros((H, W), np.uint8)
    for e in (left, right):
        if e is not None:
            cx, cy, ax, ay = e
            cv2.ellipse(m, (cx, cy), (ax, ay), 0, 0, 360, 1, -1)
    return m.astype(bool)


def test_two_lungs_are_plausible() -> None:
    check = check_lung_mask(lungs())
    assert check.plausible and check.problems == ()
    assert len(check.lung_shares) == 2 and abs(sum(check.lung_shares) - 1) < 1e-3
    assert check.box == (30, 27, 215, 164)  # the ellipses' joint extent
    assert 0.06 < check.total_share < 0.75


@pytest.mark.parametrize(
    ("mask", "problem"),
    [
        (lungs(right=None), "not_two_lungs"),  # one lung white-out
        (np.zeros((H, W), bool), "not_two_lungs"),  # nothing found
        (lungs(right=(120, 95, 60, 70)), "not_two_lungs"),  # the two merged into one blob
        (lungs(left=(70, 95, 12, 20)), "unbalanced_lungs"),  # a lung mostly missing
        (lungs(left=(50, 95, 20, 50), right=(100, 95, 18, 50)), "not_one_each_side"),
        (lungs(left=(70, 160, 40, 35), right=(170, 160, 40, 35)), "vertical_position"),
        (lungs(left=(70, 95, 14, 20), right=(170, 95, 14, 20)), "total_area"),  # too small
        (lungs(left=(62, 100, 62, 100), right=(180, 100, 60, 100)), "total_area"),  # too big
    ],
)
def test_implausible_masks_name_their_problem(mask: np.ndarray, problem: str) -> None:
    check = check_lung_mask(mask)
    assert not check.plausible
    assert problem in check.problems


def test_stray_mask_outside_the_lungs() -> None:
    m = lungs().astype(np.uint8)
    # Blobs below the lungs (bowel gas taken for lung), each smaller than a lung.
    for cx in (25, 72, 119, 166, 213):
        cv2.circle(m, (cx, 183), 16, 1, -1)
    check = check_lung_mask(m.astype(bool))
    assert check.problems == ("stray_mask",)
    # Specks below the component floor neither count as lungs nor move the box.
    clean = lungs()
    clean[5, 5] = clean[190, 230] = True
    assert check_lung_mask(clean).plausible and check_lung_mask(clean).box == (30, 27, 215, 164)


def test_limits_are_parameters() -> None:
    small = lungs(left=(70, 95, 14, 20), right=(170, 95, 14, 20))
    assert check_lung_mask(small, LungMaskLimits(min_total_share=0.01)).plausible
    with pytest.raises(ValueError, match="2-D mask"):
        check_lung_mask(np.zeros((4, 4), bool))


def test_the_same_verdict_on_a_squashed_mask() -> None:
    """Shares and positions are fractions: a mask on the squashed square input agrees."""
    for mask in (lungs(), lungs(right=None), lungs(left=(50, 95, 20, 50), right=(100, 95, 18, 50))):
        squashed = cv2.resize(mask.astype(np.uint8), (128, 128), interpolation=cv2.INTER_NEAREST)
        a, b = check_lung_mask(mask), check_lung_mask(squashed.astype(bool))
        assert a.plausible == b.plausible and a.problems == b.problems


def test_margin_keeps_hila_angles_and_apices() -> None:
    box = (30, 27, 215, 164)  # the two lungs' extent: the mediastinum and hila lie inside
    out = box_with_margin(box, (W, H), LungMargin(side=0.1, top=0.05, bottom=0.2))
    bw, bh = 215 - 30, 164 - 27
    assert out == (
        int(np.floor(30 - 0.1 * bw)),
        int(np.floor(27 - 0.05 * bh)),
        int(np.ceil(215 + 0.1 * bw)),
        int(np.ceil(164 + 0.2 * bh)),  # the costophrenic angles and posterior recesses
    )
    assert box_with_margin(box, (W, H), LungMargin(side=0.3, top=0.3, bottom=0.3)) == (0, 0, W, H)
    x0, y0, x1, y1 = box_with_margin(box, (W, H))
    assert x0 < 30 and y0 < 27 and x1 > 215 and y1 > 164
    assert (y1 - 164) > (27 - y0)  # more room below (angles, retrocardiac) than above
    with pytest.raises(ValueError, match="empty box"):
        box_with_margin((5, 5, 5, 9), (W, H))


def test_scale_box_is_outward() -> None:
    assert scale_box((10, 20, 64, 100), (128, 128), (512, 400)) == (40, 62, 256, 313)
    assert scale_box((0, 0, 128, 128), (128, 128), (300, 301)) == (0, 0, 300, 301)
