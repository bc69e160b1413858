"""gateway.score_overlay and gateway.operating_point without services: the overlay is the
score map at display size over its box, coloured by each cell's share of the score against
the effective threshold; stored results are read as stored, old ones at their own threshold."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gateway.operating_point import read_at, stored_reading
from gateway.score_overlay import display_scale, render
from shared.contracts.screening import (
    Category,
    OperatingPoint,
    ReliabilityReason,
    ScoreMap,
    assess_reliability,
)
from shared.overlay import COOL, HOT, screen_palette

RATE = {"value": 0.9, "ci95": [0.8, 0.95], "n": 40}
MODEL = {"name": "m", "version": "1", "sha256": "0" * 64}


def _point(threshold: float) -> OperatingPoint:
    return OperatingPoint.model_validate(
        {
            "source": "card",
            "score_threshold": threshold,
            "sensitivity": RATE,
            "specificity": RATE,
            "measured_on": "test",
            "model": MODEL,
        }
    )


def _map(w: int = 2000, h: int = 1600) -> ScoreMap:
    grid = np.zeros((8, 8))
    grid[2, 5] = 1.0  # the hottest cell, row 2 from the top, column 5 from the left
    grid[6, 1] = 0.5
    box = {"x0": 200, "y0": 100, "x1": 1800, "y1": 1500}
    return ScoreMap(values=grid.tolist(), box=box, image_width=w, image_height=h)


def _rgba(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        assert img.mode == "P" and "transparency" in img.info
        return np.asarray(img.convert("RGBA")).astype(int)


def test_display_size_box_and_where_the_peak_lies() -> None:
    smap = _map()
    out = render(smap, 80.0, read_at(80.0, _point(30.0), None))
    assert out is not None
    f = display_scale(2000, 1600)
    assert f == pytest.approx(1024 / 2000)
    assert (out.width, out.height) == (819, 717)  # the box's 1600 x 1400, x f, rounded
    assert out.covers.model_dump() == smap.box.model_dump()
    rgba = _rgba(out.png)
    assert rgba.shape == (717, 819, 4)
    y, x = np.unravel_index(int(np.argmax(rgba[..., 3])), rgba.shape[:2])
    assert (int(y * 8 / 717), int(x * 8 / 819)) == (2, 5)
    assert rgba[0, 0, 3] == 0  # a zero cell is transparent
    # a box sticking out of the image: the part inside, with the map's geometry
    small = render(_map(400, 300), 80.0, read_at(80.0, _point(30.0), None))
    assert small is not None and (small.width, small.height) == (200, 200)
    assert small.covers.model_dump() == {"x0": 200, "y0": 100, "x1": 400, "y1": 300}


def test_no_hot_colour_below_the_threshold() -> None:
    smap = _map(800, 700)
    smap = smap.model_copy(update={"box": smap.box.model_copy(update={"x1": 800, "y1": 700})})
    below = render(smap, 29.0, read_at(29.0, _point(30.0), None))
    above = render(smap, 90.0, read_at(90.0, _point(30.0), None))
    assert below is not None and above is not None
    low, high = _rgba(below.png), _rgba(above.png)
    seen = low[..., 3] > 0
    assert seen.any() and (low[..., 2][seen] > low[..., 0][seen]).all()  # all blue
    assert (high[..., 0] > high[..., 2] + 40).any()  # the peak is hot
    # alpha is the cell's relative strength, the same whatever the score
    assert np.array_equal(low[..., 3], high[..., 3])


def test_screen_palette_ramps() -> None:
    pal = screen_palette(60.0, 30.0).astype(int)
    assert tuple(pal[0]) == (0, 0, 0, 0)
    # level 127 is half the map's peak: 30 of 60, exactly the threshold: the hot ramp starts
    assert tuple(pal[128][:3]) == pytest.approx(HOT[0], abs=3)
    assert tuple(pal[120][:3]) == pytest.approx(COOL[1], abs=12)
    assert pal[255][3] == round(255 * 0.75)
    grey = screen_palette(60.0, 30.0, trusted=False).astype(int)
    spread = grey[1:, :3].astype(int).max(axis=1) - grey[1:, :3].astype(int).min(axis=1)
    assert spread.max() <= 40
    under = screen_palette(99.9, 100.0).astype(int)  # just under: blue everywhere
    assert (under[1:, 0] < under[1:, 2]).all()
    at = screen_palette(100.0, 100.0).astype(int)  # at the threshold is flagged: the peak hot
    assert at[255, 0] > at[255, 2] and (at[1:255, 0] < at[1:255, 2]).all()


def test_outside_population_reads_outside_whatever_the_score() -> None:
    outside = assess_reliability([ReliabilityReason.implausible_lung_mask])
    for score in (0.0, 29.0, 95.0):
        reading = read_at(score, _point(30.0), outside)
        assert reading.category == Category.outside_population
        out = render(_map(), score, reading)
        assert out is not None
        rgba = _rgba(out.png)
        assert not ((rgba[..., 3] > 0) & (rgba[..., 0] > rgba[..., 2] + 40)).any()


def _stored(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "score": 30.85,
        "threshold": 0.308589,
        "label": "abnormal",
        "probabilities": {"normal": 0.691405, "abnormal": 0.308595},
    }
    return {**base, **over}


def test_stored_readings() -> None:
    # before operating points: the label it was shown with, from the precise probability
    old = stored_reading(_stored())
    assert old.basis == "legacy_threshold" and old.operating_point is None
    assert old.category == Category.review_recommended  # 30.8595 >= 30.8589, score 30.85 is not
    assert old.score_threshold == pytest.approx(30.8589)
    normal = stored_reading(_stored(score=12.0, probabilities={"normal": 0.88, "abnormal": 0.12}))
    assert normal.category == Category.no_finding_flagged
    # stored with its reading: that reading, not a re-derivation at another point
    kept = read_at(12.0, _point(10.0), None).model_dump(mode="json")
    assert stored_reading(_stored(score=12.0, effective=kept)).score_threshold == 10.0
    # a point but no reading stored: read at that point
    at = stored_reading(_stored(score=12.0, operating_point=_point(50.0).model_dump()))
    assert at.category == Category.no_finding_flagged and at.basis == "operating_point"
