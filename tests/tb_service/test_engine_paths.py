"""The chest engine's faster paths (issue 15) give the very outputs of the paths before:

* one conversion to 8-bit gray serves the orientation model, the gate and the screen
  (``shared.imaging.as_gray8``), where each pipeline converted the upload itself;
* with batching off (the CPU default) a request runs decode to answer in one CPU-pool call,
  with the same answer as through the batcher.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

import shared.imaging
import tb_service.preprocess
from shared.imaging import decode_image, encode_dicom
from shared.transforms import StageTimings
from tb_service.engine import ChestEngine
from tb_service.orientation import upright_image
from tb_service.settings import MODELS_DIR
from tests.imagegen import png_bytes
from tests.tb_service.svc_helpers import chest_like, client_for, settings_for

pytestmark = pytest.mark.skipif(
    not (MODELS_DIR / "chest-abnormality").is_dir(), reason="committed chest models absent"
)


def _rgb_jpeg() -> bytes:
    gray = chest_like(300, 260, seed=2)
    rgb = np.stack([gray, np.clip(gray.astype(int) + 9, 0, 255).astype(np.uint8), gray], -1)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


UPLOADS: dict[str, Callable[[], bytes]] = {
    "png8": lambda: png_bytes(chest_like(320, 280, seed=1)),
    "png16 (12-bit)": lambda: png_bytes(chest_like(320, 280, seed=3).astype(np.uint16) * 16),
    "dicom (12-bit, window)": lambda: encode_dicom(
        chest_like(300, 300, seed=4).astype(np.uint16) * 16,
        modality="DX",
        bits_stored=12,
        extra={"WindowCenter": 2000, "WindowWidth": 3500},
    ),
    "rgb jpeg": _rgb_jpeg,
    "rotated png8": lambda: png_bytes(np.ascontiguousarray(np.rot90(chest_like(320, 280, 5)))),
}


async def test_prepared_inputs_are_those_each_pipeline_makes_of_the_upload() -> None:
    async with client_for(settings_for(MODELS_DIR)) as (app, _):
        engine: ChestEngine = app.state.ctx.extras["chest"]
        for name, make in UPLOADS.items():
            decoded = decode_image(make())
            prepared = engine.preprocess(decoded, StageTimings())
            k = prepared.orientation.k if prepared.orientation is not None else 0
            upright = upright_image(decoded, k)
            gate, _ = engine.gate_pipeline.run(upright)
            chest, _ = engine.chest_pipeline.run(upright)
            assert np.array_equal(prepared.gate_image, gate.image), name
            assert prepared.chest is not None, name
            assert np.array_equal(prepared.chest.image, chest.image), name
            assert prepared.chest.crop_box == chest.crop_box, name
            assert prepared.chest.reasons == chest.reasons, name


async def test_one_conversion_to_8_bits_per_upload(monkeypatch: pytest.MonkeyPatch) -> None:
    wide: list[str] = []
    real = shared.imaging.to_uint8

    def counting(img: Any, gray: bool = True) -> Any:
        if img.pixels.dtype != np.uint8 or img.pixels.ndim != 2:
            wide.append(str(img.pixels.dtype))
        return real(img, gray)

    async with client_for(settings_for(MODELS_DIR)) as (app, _):
        engine: ChestEngine = app.state.ctx.extras["chest"]
        monkeypatch.setattr(shared.imaging, "to_uint8", counting)
        monkeypatch.setattr(tb_service.preprocess, "to_uint8", counting)
        engine.prepare(UPLOADS["png16 (12-bit)"]())
    assert wide == ["uint16"]


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    body.pop("timings_ms")
    return body


async def test_batching_off_answers_as_the_batcher_in_one_pool_call() -> None:
    data = UPLOADS["png8"]()
    files = {"file": ("x.png", data, "image/png")}
    answers = {}
    for policy in ("on", "off"):
        async with client_for(settings_for(MODELS_DIR, batching=policy, max_wait_ms=1)) as (app, c):
            engine: ChestEngine = app.state.ctx.extras["chest"]
            assert engine.batching is (policy == "on")
            pool = app.state.ctx.cpu
            calls: list[str] = []
            real_run = pool.run

            async def counted(
                fn: Any, *a: Any, _calls: list[str] = calls, _run: Any = real_run, **kw: Any
            ) -> Any:
                _calls.append(getattr(fn, "__name__", "?"))
                return await _run(fn, *a, **kw)

            pool.run = counted
            r = await c.post("/v1/predict", files=files)
            assert r.status_code == 200, r.text
            answers[policy] = _answer(r.json())
            hops = [n for n in calls if n != "run_batch"]
            assert hops == (["prepare", "finish"] if policy == "on" else ["_serve_one"]), calls
    assert answers["on"] == answers["off"]


async def test_batching_off_is_the_cpu_default() -> None:
    async with client_for(settings_for(MODELS_DIR)) as (app, _):
        engine: ChestEngine = app.state.ctx.extras["chest"]
        assert engine.abnormality.provider == "CPUExecutionProvider"
        assert engine.batching is False
