"""Augmentation that destroys acquisition cues, on uint8 crops before the served tail.

Each op is a small callable with its parameters in ``__init__`` and the random draw passed in
(``op(pixels, rng) -> pixels``): uint8 (H, W) in and out, values 0..255, the same shape
(except :class:`CropJitter`, which trims the borders). :class:`AcquisitionAugment` chains them
in the order a film is acquired and stored (exposure curve, resolution, sharpness, noise, bit
depth, lossy compression) after a small crop jitter, so a network cannot tell the source from
resolution, noise texture, JPEG blocking, tone curve or quantisation. TensorFlow-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

U8 = NDArray[np.uint8]


class Op(Protocol):
    def __call__(self, px: U8, rng: np.random.Generator) -> U8: ...


def _u8(x: NDArray[Any]) -> U8:
    return np.ascontiguousarray(np.clip(np.rint(x), 0, 255), dtype=np.uint8)


@dataclass(frozen=True)
class Rescale:
    """Down-and-up (or up-and-down) resampling by a log-uniform factor in [low, high]:
    the film's native resolution and the resizer's kernel are no longer visible."""

    low: float = 0.5
    high: float = 2.0

    def __call__(self, px: U8, rng: np.random.Generator) -> U8:
        h, w = px.shape[:2]
        f = float(np.exp(rng.uniform(np.log(self.low), np.log(self.high))))
        kernels = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC)
        down = kernels[int(rng.integers(len(kernels)))]
        mid = cv2.resize(px, (max(8, round(w * f)), max(8, round(h * f))), interpolation=down)
        back = cv2.INTER_LINEAR if f < 1 else cv2.INTER_AREA
        return _u8(cv2.resize(mid, (w, h), interpolation=back))


@dataclass(frozen=True)
class BlurSharpen:
    """Gaussian blur (sigma up to ``max_sigma``) or an unsharp mask (amount up to
    ``max_amount``), half the time each."""

    max_sigma: float = 1.5
    max_amount: float = 1.0

    def __call__(self, px: U8, rng: np.random.Generator) -> U8:
        sigma = float(rng.uniform(0.3, self.max_sigma))
        blurred = cv2.GaussianBlur(px, (0, 0), sigma)
        if rng.random() < 0.5:
            return _u8(blurred)
        amount = float(rng.uniform(0.2, self.max_amount))
        return _u8(px.astype(np.float32) * (1 + amount) - blurred.astype(np.float32) * amount)


@dataclass(frozen=True)
class Noise:
    """Additive Gaussian noise, sigma up to ``max_sigma`` grey levels, either white or
    low-pass (correlated, like detector noise after resampling)."""

    max_sigma: float = 8.0

    def __call__(self, px: U8, rng: np.random.Generator) -> U8:
        sigma = float(rng.uniform(1.0, self.max_sigma))
        n = rng.normal(0.0, sigma, px.shape).astype(np.float32)
        if rng.random() < 0.5:
            n = cv2.GaussianBlur(n, (0, 0), 1.0) * 2.0
        return _u8(px.astype(np.float32) + n)


@dataclass(frozen=True)
class Jpeg:
    """Re-encode as JPEG at a quality drawn from [low, high]."""

    low: int = 50
    high: int = 100

    def __call__(self, px: U8, rng: np.random.Generator) -> U8:
        q = int(rng.integers(self.low, self.high + 1))
        ok, buf = cv2.imencode(".jpg", px, [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
            return px
        out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
        return np.ascontiguousarray(out, dtype=np.uint8)


@dataclass(frozen=True)
class Gamma:
    """A tone curve x -> x ** gamma, gamma log-uniform in [low, high]."""

    low: float = 0.6
    high: float = 1.6

    def __call__(self, px: U8, rng: np.random.Generator) -> U8:
        g = float(np.exp(rng.uniform(np.log(self.low), np.log(self.high))))
        lut = _u8(255.0 * (np.arange(256, dtype=np.float32) / 255.0) ** g)
        return np.ascontiguousarray(lut[px], dtype=np.uint8)


@dataclass(frozen=True)
class BitDepth:
    """Quantise to ``bits`` in [low, high] significant bits (then back onto 0..255)."""

    low: int = 4
    high: int = 7

    def __call__(self, px: U8, rng: np.random.Generator) -> U8:
        bits = int(rng.integers(self.low, self.high + 1))
        levels = (1 << bits) - 1
        return _u8(np.rint(px.astype(np.float32) / 255.0 * levels) * (255.0 / levels))


@dataclass(frozen=True)
class CropJitter:
    """Trim up to ``max_frac`` of each side (the lung box is never exact either)."""

    max_frac: float = 0.06

    def __call__(self, px: U8, rng: np.random.Generator) -> U8:
        h, w = px.shape[:2]
        t, b, l_, r = (rng.uniform(0, self.max_frac, 4) * np.array([h, h, w, w])).astype(int)
        out = px[t : h - b, l_ : w - r]
        if out.shape[0] < 8 or out.shape[1] < 8:
            return px
        return np.ascontiguousarray(out)


def _default_ops() -> list[tuple[Op, float]]:
    return [
        (CropJitter(), 0.8),
        (Gamma(), 0.5),
        (Rescale(), 0.7),
        (BlurSharpen(), 0.5),
        (Noise(), 0.5),
        (BitDepth(), 0.3),
        (Jpeg(), 0.6),
    ]


@dataclass
class AcquisitionAugment:
    """The ops above, each applied with its probability, in acquisition order."""

    ops: list[tuple[Op, float]] = field(default_factory=_default_ops)

    def __call__(self, px: U8, rng: np.random.Generator) -> U8:
        for op, p in self.ops:
            if rng.random() < p:
                px = op(px, rng)
        return px

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"op": type(op).__name__, "p": p, **{k: v for k, v in vars(op).items()}}
            for op, p in self.ops
        ]
