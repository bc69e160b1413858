"""The two yardsticks of tb_service's ``POST /v1/predict``, run in the benchmark's process.

* :func:`in_process`: the same work without HTTP: the service's own :class:`ChestEngine`
  built from the same settings (ONNX Runtime and OpenCV threads included), one request =
  ``prepare`` (decode, header checks, orientation, gate and chest pipelines with the lung-seg
  model) → ``run_batch`` of one → ``finish`` (no heatmap PNG) → the JSON bytes.
* :func:`minimal`: what a user would write in an afternoon, on one thread: decode (OpenCV;
  pydicom with its VOI window for DICOM) → 64 px → orientation and gate models → 384 px working
  image → 128 px lung-seg → crop to the mask's box → 128 px → abnormality model → JSON. Every
  committed model the service runs, in each pass it makes, and nothing else.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from shared.model import ModelRepository

CHEST_MODELS = ("chest-orientation", "chest-gate", "lung-seg", "chest-abnormality")


def in_process(settings: Any) -> Callable[[bytes], bytes]:
    """``settings``: a tb_service Settings, as the service under test has them."""
    from tb_service.app import create_app
    from tb_service.engine import ChestEngine

    app = create_app(settings)
    ctx = app.state.ctx
    assert ctx.models is not None
    ctx.models.load_all()
    if settings.opencv_threads > 0:
        cv2.setNumThreads(settings.opencv_threads)
    engine = ChestEngine(settings, ctx.models, ctx)
    engine.warmup()

    def run(data: bytes) -> bytes:
        prepared = engine.prepare(data)
        scored = engine.run_batch([prepared])[0]
        prediction = engine.finish(prepared, scored, heatmap=False)
        return prediction.model_dump_json().encode()

    return run


def _session(folder: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(
        str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"]
    )


def decode_gray8(data: bytes) -> NDArray[np.uint8]:
    """8-bit gray pixels of a PNG/JPEG (any depth) or a DICOM (its linear VOI window)."""
    if data[128:132] == b"DICM":
        import pydicom

        ds = pydicom.dcmread(io.BytesIO(data))
        px = ds.pixel_array.astype(np.float32)
        if "WindowCenter" in ds:
            c, w = float(ds.WindowCenter), float(ds.WindowWidth)
            lo, hi = c - w / 2.0, c + w / 2.0
        else:
            lo, hi = 0.0, float(2 ** int(ds.BitsStored) - 1)
        gray: NDArray[np.uint8] = np.clip((px - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
        return gray
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2GRAY)
    if arr.dtype == np.uint16:
        bits = max(8, int(arr.max()).bit_length())
        arr = (arr >> (bits - 8)).astype(np.uint8)
    return np.asarray(arr, np.uint8)


def _zscore(x: NDArray[np.uint8]) -> NDArray[np.float32]:
    f = x.astype(np.float32)
    out: NDArray[np.float32] = ((f - f.mean()) / max(float(f.std()), 1e-3))[None, :, :, None]
    return out


def minimal(models_dir: Path) -> Callable[[bytes], bytes]:
    found = ModelRepository(models_dir).discover()
    orient, gate, seg, abn = (_session(found[name]) for name in CHEST_MODELS)

    def run(data: bytes) -> bytes:
        gray = decode_gray8(data)
        small = cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA)
        x64 = (small.astype(np.float32) / 255.0)[None, :, :, None]
        p_orient = orient.run(None, {"image": x64})[0][0]
        p_gate = gate.run(None, {"image": x64})[0][0]
        h, w = gray.shape
        f = 384.0 / max(h, w)
        work = cv2.resize(gray, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
        lung = seg.run(None, {"image": _zscore(cv2.resize(work, (128, 128)))})[0][0] > 0.5
        rows, cols = np.flatnonzero(lung.any(axis=1)), np.flatnonzero(lung.any(axis=0))
        wh, ww = work.shape
        if rows.size and cols.size:
            y0, y1 = rows[0] * wh // 128, (rows[-1] + 1) * wh // 128
            x0, x1 = cols[0] * ww // 128, (cols[-1] + 1) * ww // 128
            work = work[y0:y1, x0:x1]
        out = abn.run(None, {"image": _zscore(cv2.resize(work, (128, 128)))})
        names = [o.name for o in abn.get_outputs()]
        res = dict(zip(names, out, strict=True))
        answer = {
            "gate": float(p_gate[1]),
            "orientation": int(np.argmax(p_orient)),
            "probabilities": [round(float(v), 6) for v in res["probs"][0]],
            "cam": np.round(res["cam"][0], 4).tolist(),
        }
        return json.dumps(answer).encode()

    return run
