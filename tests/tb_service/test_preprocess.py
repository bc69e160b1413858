"""Unit tests of the chest preprocessing steps on small synthetic arrays."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from shared.imaging import DecodedImage
from shared.transforms import Compose
from tb_service.preprocess import (
    GATE_INPUT_SIZE,
    INPUT_SIZE,
    ChestInput,
    Clahe,
    Downscale,
    LungCrop,
    MedianDenoise,
    Normalise,
    ResizeSquare,
    ToGrayUint8,
    Work,
    chest_pipeline,
    find_lung_box,
    gate_pipeline,
    heatmap_to_original,
    heuristic_chest_pipeline,
    peak_to_original,
)
from tests.imagegen import png_bytes


def decoded(px: np.ndarray, bits: int = 8) -> DecodedImage:
    top = float(2**bits - 1)
    return DecodedImage(pixels=px, format="png", bits_stored=bits, value_range=(0.0, top))


def phantom(h: int = 300, w: int = 400) -> np.ndarray:
    """A bright body with two dark ellipses ("lungs") and dark air outside."""
    img = np.full((h, w), 20, np.uint8)
    cv2.ellipse(img, (w // 2, h // 2), (int(w * 0.42), int(h * 0.48)), 0, 0, 360, 200, -1)
    for cx in (int(w * 0.32), int(w * 0.68)):
        cv2.ellipse(img, (cx, int(h * 0.45)), (int(w * 0.12), int(h * 0.28)), 0, 0, 360, 60, -1)
    rng = np.random.default_rng(0)
    return np.clip(img.astype(np.int16) + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)


def work(px: np.ndarray) -> Work:
    h, w = px.shape[:2]
    return Work(px, (0, 0, w, h), (w, h), 1.0)


def test_to_gray_uint8_rgb_and_16bit() -> None:
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 1] = 255
    out = ToGrayUint8()(decoded(rgb))
    assert out.pixels.shape == (20, 30) and out.pixels.dtype == np.uint8
    assert out.original_size == (30, 20) and out.crop_box == (0, 0, 30, 20)
    px16 = np.full((20, 20), 4095, np.uint16)
    d16 = DecodedImage(px16, "dicom", 12, (0.0, 4095.0))
    assert int(ToGrayUint8()(d16).pixels.max()) == 255


def test_to_gray_accepts_bytes_and_refuses_other() -> None:
    out = ToGrayUint8()(png_bytes(np.full((20, 24), 7, np.uint8)))
    assert out.pixels.shape == (20, 24)
    with pytest.raises(TypeError):
        ToGrayUint8()(np.zeros((4, 4)))


def test_downscale_tracks_scale() -> None:
    out = Downscale(max_side=100)(work(np.zeros((200, 400), np.uint8)))
    assert out.pixels.shape == (50, 100) and out.scale == pytest.approx(0.25)
    same = Downscale(max_side=1000)(work(np.zeros((20, 40), np.uint8)))
    assert same.scale == 1.0


def test_working_side_brings_every_size_to_one_scale() -> None:
    """A film sent at half or twice its size reaches the later steps at the same size."""
    from tb_service.preprocess import WorkingSide

    film = (np.indices((192, 256)).sum(axis=0) % 251).astype(np.uint8)
    step = WorkingSide(384)
    half = step(work(film))
    assert half.pixels.shape == (288, 384) and half.scale == pytest.approx(1.5)
    big = step(work(np.zeros((1152, 1536), np.uint8)))
    assert big.pixels.shape == (288, 384) and big.scale == pytest.approx(0.25)
    exact = step(work(np.zeros((288, 384), np.uint8)))
    assert exact.scale == 1.0 and exact.pixels.shape == (288, 384)


def test_median_removes_salt() -> None:
    px = np.full((32, 32), 100, np.uint8)
    px[10, 10] = 255
    out = MedianDenoise(3)(work(px))
    assert int(out.pixels[10, 10]) == 100
    with pytest.raises(ValueError):
        MedianDenoise(4)


def test_lung_box_on_phantom_and_fallbacks() -> None:
    img = phantom()
    box = find_lung_box(img)
    assert box is not None
    x0, y0, x1, y1 = box
    # Both "lungs" (x 80..176 and 224..320, y 51..219) are inside, the outer air mostly not.
    assert x0 <= 85 and x1 >= 315 and y0 <= 60 and y1 >= 210
    assert (x1 - x0) * (y1 - y0) < 0.9 * img.size
    assert find_lung_box(np.full((100, 100), 128, np.uint8)) is None  # flat
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (100, 100)).astype(np.uint8)
    assert find_lung_box(noise) is None


def test_lung_crop_maps_to_original_pixels() -> None:
    img = phantom(600, 800)
    w0 = Downscale(max_side=400)(work(img))
    out = LungCrop()(w0)
    x0, y0, x1, y1 = out.crop_box
    assert 0 <= x0 < x1 <= 800 and 0 <= y0 < y1 <= 600
    assert x0 <= 170 and x1 >= 630  # lungs span x 160..640 in original pixels
    flat = LungCrop()(work(np.full((50, 60), 9, np.uint8)))
    assert flat.crop_box == (0, 0, 60, 50)  # fallback: whole image


def test_clahe_spreads_contrast() -> None:
    px = np.tile(np.linspace(100, 140, 64, dtype=np.uint8), (64, 1))
    out = Clahe()(work(px))
    assert int(out.pixels.max()) - int(out.pixels.min()) > 40


def test_resize_square_hides_aspect() -> None:
    a = ResizeSquare(32)(work(np.zeros((100, 300), np.uint8)))
    b = ResizeSquare(32)(work(np.zeros((300, 100), np.uint8)))
    assert a.pixels.shape == b.pixels.shape == (32, 32)


def test_normalise_modes() -> None:
    px = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    z = Normalise("zscore")(work(px))
    assert isinstance(z, ChestInput) and z.image.shape == (8, 8, 1) and z.image.dtype == np.float32
    assert abs(float(z.image.mean())) < 1e-5 and float(z.image.std()) == pytest.approx(1, 1e-3)
    u = Normalise("unit")(work(px))
    assert float(u.image.min()) >= 0.0 and float(u.image.max()) <= 1.0
    blank = Normalise("zscore")(work(np.zeros((8, 8), np.uint8)))
    assert np.isfinite(blank.image).all()
    with pytest.raises(ValueError):
        Normalise("other")  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(300, 400), (1200, 700), (40, 40)])
@pytest.mark.parametrize(
    ("pipeline", "crop"),
    [(chest_pipeline, "lung_seg_crop"), (heuristic_chest_pipeline, "lung_crop")],
)
def test_pipelines_end_to_end(
    shape: tuple[int, int], pipeline: Callable[[], Compose[ChestInput]], crop: str
) -> None:
    img = cv2.resize(phantom(), (shape[1], shape[0]))
    out = pipeline()(decoded(img))
    assert out.image.shape == (INPUT_SIZE, INPUT_SIZE, 1) and out.image.dtype == np.float32
    assert out.original_size == (shape[1], shape[0])
    x0, y0, x1, y1 = out.crop_box
    assert 0 <= x0 < x1 <= shape[1] and 0 <= y0 < y1 <= shape[0]
    g = gate_pipeline()(decoded(img))
    assert g.image.shape == (GATE_INPUT_SIZE, GATE_INPUT_SIZE, 1)
    assert g.crop_box == (0, 0, shape[1], shape[0])
    names = pipeline().stage_names()
    assert names[0] == "to_gray_uint8" and crop in names and names[-1] == "normalise"
    # One working resolution no larger than the smallest source (issue 13): 384 px; the
    # segmentation-crop pipeline first brings every film to its 192 px detail side.
    steps = {s["stage"]: s["params"] for s in pipeline().describe()}
    if crop == "lung_seg_crop":
        assert names[1:3] == ["detail_side", "working_side"]
        assert steps["detail_side"] == {"side": 192} and steps["working_side"] == {"side": 384}
    else:
        assert steps["downscale"] == {"max_side": 384}


def test_detail_side_gives_a_half_size_film_the_originals_input() -> None:
    """The same film at its size and at half its size reaches the network nearly alike (the
    detail side is 192 px, so a 384 px film and its 192 px copy carry the same detail)."""
    smooth = cv2.resize(phantom(), (384, 384), interpolation=cv2.INTER_AREA).astype(np.float64)
    grain = np.random.default_rng(0).normal(0, 12, smooth.shape)  # a detector's noise
    img = np.clip(smooth + grain, 0, 255).astype(np.uint8)
    half = cv2.resize(img, (192, 192), interpolation=cv2.INTER_AREA)
    pipe = chest_pipeline()
    full_in, half_in = pipe(decoded(img)).image, pipe(decoded(half)).image
    assert np.abs(full_in - half_in).mean() < 0.005
    without = chest_pipeline(detail_side=None)  # chest-abnormality/2's
    assert np.abs(without(decoded(img)).image - without(decoded(half)).image).mean() > 0.05


def test_heatmap_mapping() -> None:
    inp = ChestInput(np.zeros((4, 4, 1), np.float32), (10, 20, 50, 60), (100, 80))
    hm = np.zeros((4, 4), np.float32)
    hm[0, 3] = 1.0
    full = heatmap_to_original(hm, inp)
    assert full.shape == (80, 100)
    assert float(full[:20].max()) == 0.0 and float(full[20:60, 10:50].max()) > 0
    x, y = peak_to_original(hm, inp)
    assert 40 <= x <= 50 and 20 <= y <= 30
