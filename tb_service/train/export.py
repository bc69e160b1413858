"""Export to ONNX with tf2onnx, and the Keras-vs-ONNX parity check on real images."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

log = logging.getLogger("irmi.train")

OPSET = 15


def _image_signature(size: int) -> list[Any]:
    return [tf.TensorSpec([None, size, size, 1], tf.float32, name="image")]


def chest_graph(model: keras.Model, size: int, temperature: float) -> Any:
    """tf.function image -> {probs (temperature-scaled), cam (abnormal, >= 0), subtype}."""
    # numpy values become graph constants inside the function (tensors captured from
    # outside would turn into extra ONNX inputs).
    w, b = (np.asarray(v, np.float32) for v in model.get_layer("abn_dense").get_weights())
    wdiff_np = (w[:, 1] - w[:, 0]).astype(np.float32)
    inv_t_np = np.float32(1.0 / float(temperature))

    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        wt, bt = tf.constant(w), tf.constant(b)
        wdiff, inv_t = tf.constant(wdiff_np), tf.constant(inv_t_np)
        out = model(image, training=False)
        feats = out["features"]
        pooled = tf.reduce_mean(feats, axis=[1, 2])
        logits = tf.matmul(pooled, wt) + bt
        probs = tf.nn.softmax(logits * inv_t, axis=-1)
        cam = tf.nn.relu(tf.reduce_sum(feats * wdiff, axis=-1))
        return {
            "probs": tf.identity(probs, name="probs"),
            "cam": tf.identity(cam, name="cam"),
            "subtype": tf.identity(out["sub"], name="subtype"),
        }

    return tf.function(serve, input_signature=_image_signature(size))


def robust_graph(
    models: list[keras.Model], size: int, temperature: float, bias: float = 0.0
) -> Any:
    """tf.function image -> {probs, cam, subtype, embedding} of one network or an ensemble.

    probs = mean over members of softmax(logits / T + [0, bias]); cam = mean of the members' CAMs;
    embedding = the members' pooled penultimate features, concatenated (what
    :mod:`tb_service.reliability` measures distances in)."""
    heads = []
    for m in models:
        w, b = (np.asarray(v, np.float32) for v in m.get_layer("abn_dense").get_weights())
        heads.append((w, b, (w[:, 1] - w[:, 0]).astype(np.float32)))
    inv_t_np = np.float32(1.0 / float(temperature))
    shift_np = np.array([0.0, bias], np.float32)

    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        inv_t, shift = tf.constant(inv_t_np), tf.constant(shift_np)
        probs, cams, subs, embs = [], [], [], []
        for m, (w, b, wdiff) in zip(models, heads, strict=True):
            out = m(image, training=False)
            feats = out["features"]
            pooled = tf.reduce_mean(feats, axis=[1, 2])
            logits = tf.matmul(pooled, tf.constant(w)) + tf.constant(b)
            probs.append(tf.nn.softmax(logits * inv_t + shift, axis=-1))
            cams.append(tf.nn.relu(tf.reduce_sum(feats * tf.constant(wdiff), axis=-1)))
            subs.append(out["sub"])
            embs.append(pooled)
        n = float(len(models))
        return {
            "probs": tf.identity(tf.add_n(probs) / n, name="probs"),
            "cam": tf.identity(tf.add_n(cams) / n, name="cam"),
            "subtype": tf.identity(tf.add_n(subs) / n, name="subtype"),
            "embedding": tf.identity(tf.concat(embs, axis=-1), name="embedding"),
        }

    return tf.function(serve, input_signature=_image_signature(size))


def gate_graph(model: keras.Model, size: int) -> Any:
    """tf.function image -> {probs}."""

    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probs": tf.identity(model(image, training=False), name="probs")}

    return tf.function(serve, input_signature=_image_signature(size))


def seg_graph(model: keras.Model, size: int) -> Any:
    """tf.function image -> {lung: P(lung) per pixel, [N, size, size]}."""

    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"lung": tf.identity(model(image, training=False)[..., 0], name="lung")}

    return tf.function(serve, input_signature=_image_signature(size))


def to_onnx(fn: Any, path: Path) -> None:
    import tf2onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    tf2onnx.convert.from_function(
        fn, input_signature=fn.input_signature, opset=OPSET, output_path=str(path)
    )


def parity(fn: Any, path: Path, x: NDArray[Any], batch: int = 32) -> dict[str, Any]:
    """Max |Keras - ONNX Runtime| per output on the given real images."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs: dict[str, float] = {}
    for i in range(0, len(x), batch):
        x_batch = x[i : i + batch].astype(np.float32)
        ref = {k: np.asarray(v) for k, v in fn(tf.constant(x_batch)).items()}
        names = [o.name for o in sess.get_outputs()]
        got = dict(zip(names, sess.run(names, {"image": x_batch}), strict=True))
        for k, v in ref.items():
            diffs[k] = max(diffs.get(k, 0.0), float(np.abs(v - got[k]).max()))
    return {
        "images": len(x),
        "max_abs_diff": {k: float(f"{v:.3g}") for k, v in diffs.items()},
        "ok": all(v <= 1e-4 for v in diffs.values()),
        "tolerance": 1e-4,
    }
