"""Fixtures shared by tb_service's service tests: synthetic chest-like images, apps, clients."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
from fastapi import FastAPI
from PIL import Image

from tb_service.app import create_app
from tb_service.settings import Settings
from tests.imagegen import png_bytes


def chest_like(h: int = 320, w: int = 280, seed: int = 0, dtype: Any = np.uint8) -> np.ndarray:
    """A crude radiograph: dark air around a bright body with two dark lung fields, noise."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w), 20.0, dtype=np.float32)
    cv2.ellipse(img, (w // 2, h // 2), (int(w * 0.45), int(h * 0.48)), 0, 0, 360, 190, -1)
    for cx in (int(w * 0.32), int(w * 0.68)):
        cv2.ellipse(img, (cx, int(h * 0.45)), (int(w * 0.13), int(h * 0.28)), 0, 0, 360, 70, -1)
    img = cv2.GaussianBlur(img, (0, 0), 3) + rng.normal(0, 6, (h, w))
    top = float(np.iinfo(dtype).max)
    return np.clip(img / 255.0 * top, 0, top).astype(dtype)


def chest_png(h: int = 320, w: int = 280, seed: int = 0) -> bytes:
    return png_bytes(chest_like(h, w, seed))


def blank_png(h: int = 200, w: int = 200, value: int = 128) -> bytes:
    """Uniform: the rigged tiny gate calls it "not a chest X-ray"."""
    return png_bytes(np.full((h, w), value, dtype=np.uint8))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_heatmap(heatmap: dict[str, Any]) -> np.ndarray:
    assert heatmap["media_type"] == "image/png"
    raw = base64.b64decode(heatmap["base64"])
    with Image.open(io.BytesIO(raw)) as img:
        # a palette PNG whose palette carries alpha (tRNS): RGBA once decoded
        assert img.mode == "P" and "transparency" in img.info
        return np.asarray(img.convert("RGBA"))


def settings_for(models_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"models_dir": models_dir, "use_gpu": False, "onnx_intra_op_threads": 1}
    base.update(overrides)
    return Settings(**base)


@asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """In-process app with its lifespan run (models loaded, batcher started)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://tb", timeout=60) as c:
            yield app, c


def histogram(metrics_text: str, name: str, label: str) -> tuple[float, float]:
    """(sum, count) of a Prometheus histogram series whose labels contain ``label``."""
    total = count = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_sum") and label in line:
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count") and label in line:
            count = float(line.rsplit(" ", 1)[1])
    return total, count
