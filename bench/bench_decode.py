"""Image decoding: shared.imaging.decode_image against a bare cv2.imdecode, same inputs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from shared.imaging import decode_image


def _time(fn, data: bytes, repeat: int) -> float:  # type: ignore[no-untyped-def]
    """Median of `repeat` timed calls after a warm-up call, in ms."""
    fn(data)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(data)
        samples.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(samples))


def main() -> None:
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (1024, 1024), dtype=np.uint8), (0, 0), 3)
    rows = []
    for ext in (".png", ".jpg"):
        data = cv2.imencode(ext, img)[1].tobytes()
        raw = _time(
            lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_UNCHANGED), data, 20
        )
        ours = _time(decode_image, data, 20)
        rows.append(
            {
                "format": ext[1:],
                "raw_ms": round(raw, 2),
                "irmi_ms": round(ours, 2),
                "ratio": round(ours / raw, 2),
            }
        )
    print(f"{'format':8}{'cv2 ms':>10}{'irmi ms':>10}{'ratio':>8}")
    for r in rows:
        print(f"{r['format']:8}{r['raw_ms']:>10}{r['irmi_ms']:>10}{r['ratio']:>8}")
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "decode.json").write_text(json.dumps(rows, indent=2))
