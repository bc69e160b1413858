"""tb_service.heatmap: CAM → overlay (RGBA once decoded) in the original image's coordinates."""

from __future__ import annotations

import numpy as np
import pytest

from tb_service.heatmap import clip_box, normalise_cam, peak, render_heatmap


def test_normalise_cam() -> None:
    cam = np.array([[-1.0, 0.0], [2.0, np.nan]], dtype=np.float32)
    out = normalise_cam(cam)
    assert out.tolist() == [[0.0, 0.0], [1.0, 0.0]]
    assert normalise_cam(np.zeros((3, 3))).max() == 0
    assert normalise_cam(np.ones((4, 4, 1))).shape == (4, 4)
    with pytest.raises(ValueError):
        normalise_cam(np.zeros((2, 2, 2)))


def test_render_places_cam_in_crop_box() -> None:
    cam = np.zeros((4, 4), dtype=np.float32)
    cam[0, 3] = 1.0  # hottest in the top-right cell
    rgba = render_heatmap(cam, (10, 20, 50, 60), (80, 100), max_alpha=1.0)
    assert rgba.shape == (100, 80, 4) and rgba.dtype == np.uint8
    alpha = rgba[:, :, 3]
    assert alpha[:20].max() == 0 and alpha[60:].max() == 0
    assert alpha[:, :10].max() == 0 and alpha[:, 50:].max() == 0
    y, x = np.unravel_index(int(np.argmax(alpha)), alpha.shape)
    assert 20 <= y < 32 and 38 <= x < 50
    assert alpha.max() == 255
    # the jet colour map is red where the map is hot
    assert rgba[y, x, 0] > 120 and rgba[y, x, 2] < 100


def test_render_clips_a_box_outside_the_image() -> None:
    rgba = render_heatmap(np.ones((2, 2)), (-10, -10, 30, 30), (20, 20))
    assert rgba.shape == (20, 20, 4) and rgba[:, :, 3].min() > 0
    empty = render_heatmap(np.ones((2, 2)), (30, 30, 40, 40), (20, 20))
    assert empty.max() == 0
    assert clip_box((5, 5, 5, 9), (10, 10)) is None


def test_peak_in_original_pixels() -> None:
    cam = np.zeros((4, 4))
    cam[3, 0] = 5
    assert peak(cam, (0, 0, 40, 80)) == (5, 70)


def test_heatmap_png_full_size_and_capped() -> None:
    import io

    from PIL import Image

    from tb_service.heatmap import heatmap_png

    cam = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    data, w, h = heatmap_png(cam, (10, 10, 190, 290), (200, 300))
    assert (w, h) == (200, 300)
    with Image.open(io.BytesIO(data)) as img:
        # a palette PNG with per-entry alpha (shared.overlay): decoders expand it to RGBA
        assert img.mode == "P" and "transparency" in img.info and img.size == (200, 300)
        arr = np.asarray(img.convert("RGBA"))
    assert np.array_equal(arr, render_heatmap(cam, (10, 10, 190, 290), (200, 300)))
    data, w, h = heatmap_png(cam, (10, 10, 190, 290), (2000, 3000), max_side=600)
    assert (w, h) == (400, 600)
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (400, 600)
