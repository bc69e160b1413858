"""The display rendering of stored images (gateway/display.py) on small synthetic films: the
file's window/level (WindowCenter/Width, VOI LUT), rescale slope/intercept and MONOCHROME1
inversion honoured; the lung and mammography presets; the display scale shared with the
overlays; thumbnails; an overlay composited where its ``covers`` box says."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gateway import display
from gateway.score_overlay import MAX_SIDE
from shared.contracts.common import CropBox
from shared.imaging import ImageLimits
from tests.imagegen import dicom_bytes

LIMITS = ImageLimits()


def _pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im)


def _ramp(h: int = 64, w: int = 256, top: int = 4095) -> np.ndarray:
    """A 12-bit horizontal ramp 0..top (uint16)."""
    row = np.linspace(0, top, w).round().astype(np.uint16)
    return np.tile(row, (h, 1))


def test_file_window_is_the_files_window_center_and_width() -> None:
    ramp = _ramp()
    data = dicom_bytes(ramp, bits_stored=12, window=(2048, 1024))  # 1536..2560 shown
    px = _pixels(display.render_display(data, "file", LIMITS).data)
    values = ramp[0]
    assert (px[0][values < 1500] == 0).all()
    assert (px[0][values > 2600] == 255).all()
    inside = px[0][(values > 1700) & (values < 2400)]
    assert 20 < inside.min() < inside.max() < 235  # the window spreads over the grey scale


def test_rescale_and_monochrome1_inversion() -> None:
    ramp = _ramp()
    plain = _pixels(display.render_display(dicom_bytes(ramp, bits_stored=12), "file", LIMITS).data)
    inverted = _pixels(
        display.render_display(
            dicom_bytes(ramp, bits_stored=12, photometric="MONOCHROME1"), "file", LIMITS
        ).data
    )
    assert plain[0, 0] < 5 and plain[0, -1] > 250  # MONOCHROME2: high values bright
    assert inverted[0, 0] > 250 and inverted[0, -1] < 5  # MONOCHROME1: high values dark
    # Rescale slope/intercept, then a window in the rescaled units: -1000 + 2 x value.
    scaled = dicom_bytes(
        ramp, bits_stored=12, slope=2.0, intercept=-1000.0, window=(3096.0, 2048.0)
    )
    px = _pixels(display.render_display(scaled, "file", LIMITS).data)[0]
    rescaled = -1000.0 + 2.0 * ramp[0]
    assert (px[rescaled < 2000] == 0).all() and (px[rescaled > 4200] == 255).all()


def test_voi_lut_sequence_is_applied() -> None:
    from pydicom.dataset import Dataset

    ramp = _ramp(top=255).astype(np.uint16)
    lut = Dataset()
    lut.LUTDescriptor = [256, 0, 16]
    lut.LUTData = ((255 - np.arange(256)) * 257).astype("<u2").tobytes()  # an inverting VOI LUT
    data = dicom_bytes(ramp, bits_stored=8, extra={"VOILUTSequence": [lut]})
    px = _pixels(display.render_display(data, "file", LIMITS).data)
    assert px[0, 0] > 250 and px[0, -1] < 5


def test_presets_choose_their_own_window() -> None:
    rng = np.random.default_rng(0)
    film = np.zeros((200, 200), np.uint16)
    film[20:180, 20:100] = rng.integers(600, 900, (160, 80))  # a dark "lung field"
    film[20:180, 100:180] = rng.integers(2800, 3600, (160, 80))  # bright "mediastinum"
    data = dicom_bytes(film, bits_stored=12, window=(3200, 800))  # the file shows the bright part
    file_px = _pixels(display.render_display(data, "file", LIMITS).data)
    lung = _pixels(display.render_display(data, "lung", LIMITS).data)
    lung_field = lung[30:170, 30:90]
    assert file_px[30:170, 30:90].max() == 0  # the file's window leaves the lung field black
    assert lung_field.std() > 20 and lung[30:170, 110:170].min() == 255
    mammo = _pixels(display.render_display(data, "mammography", LIMITS).data)
    tissue = mammo[20:180, 20:180]
    assert mammo[:10].max() == 0  # background stays black
    assert tissue.min() < 10 and tissue.max() > 245  # the breast spans the grey scale


def test_display_scale_matches_the_overlays_and_thumbnails_are_small() -> None:
    big = np.tile(np.linspace(0, 255, 3000).astype(np.uint8), (4000, 1))
    data = dicom_bytes(big, bits_stored=8)
    shown = display.render_display(data, "file", LIMITS)
    assert shown.media_type == "image/png"
    assert (shown.width, shown.height) == display.display_size(3000, 4000)
    assert max(shown.width, shown.height) == MAX_SIDE
    thumb = display.render_thumbnail(shown.data)
    assert thumb.media_type == "image/jpeg" and thumb.data.startswith(b"\xff\xd8")
    assert max(thumb.width, thumb.height) == display.THUMB_SIDE
    assert len(thumb.data) < 15_000


def test_colour_and_raster_originals_render() -> None:
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[..., 0] = 200
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    px = _pixels(display.render_display(buf.getvalue(), "file", LIMITS).data)
    assert px.shape == (40, 60, 3) and px[0, 0, 0] == 200
    gray = _pixels(display.render_display(buf.getvalue(), "lung", LIMITS).data)
    assert gray.ndim == 2


@pytest.mark.parametrize("covers", [CropBox(x0=100, y0=200, x1=300, y1=400), None])
def test_overlay_lands_on_its_covers_box(covers: CropBox | None) -> None:
    base = io.BytesIO()
    Image.fromarray(np.full((400, 500), 40, np.uint8)).save(base, format="PNG")  # 1000x800 / 2
    layer = io.BytesIO()
    Image.new("RGBA", (50, 50), (255, 0, 0, 255)).save(layer, format="PNG")
    out = _pixels(display.composite(base.getvalue(), layer.getvalue(), covers, (1000, 800)))
    red = (out[..., 0] > 200) & (out[..., 1] < 60)
    ys, xs = np.nonzero(red)
    if covers is None:
        assert red.all()
    else:
        assert (xs.min(), xs.max(), ys.min(), ys.max()) == (50, 149, 100, 199)
