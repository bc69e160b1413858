"""Keras networks and the ONNX export (imports TensorFlow: training only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from bc_service.pipeline.features import GATE_SIZE, PATCH_SIZE


def _conv_stack(x: Any, widths: list[int]) -> Any:
    # Stem: a stride-2 convolution halves the resolution at once (cheap on CPU).
    x = keras.layers.Conv2D(widths[0], 3, strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.Activation("relu")(x)
    for w in widths[1:]:
        x = keras.layers.Conv2D(w, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    return x


def patch_model(activation: str = "softmax", seed: int = 0) -> keras.Model:
    """Compact patch classifier: a stride-2 stem (16) and 3 conv blocks (32-64-96), global
    average + max pooling,
    dropout 0.5, a 3-unit head with the given output activation (normal, benign, malignant)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((PATCH_SIZE, PATCH_SIZE, 1), name="patches")
    x = _conv_stack(inp, [16, 32, 64, 96])
    x = keras.layers.Concatenate()(
        [keras.layers.GlobalAveragePooling2D()(x), keras.layers.GlobalMaxPooling2D()(x)]
    )
    x = keras.layers.Dropout(0.5)(x)
    out = keras.layers.Dense(3, activation=activation, name="probs")(x)
    return keras.Model(inp, out)


def gate_model(seed: int = 0) -> keras.Model:
    """Mammogram-or-not on the whole image squashed to 96 x 96 gray."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((GATE_SIZE, GATE_SIZE, 1), name="image")
    x = _conv_stack(inp, [16, 32, 48, 64])
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="p_mammogram")(x)
    return keras.Model(inp, out)


def linear_sigmoid(weights: np.ndarray, bias: np.ndarray) -> keras.Model:
    """features (N, F) → sigmoid(features @ W + b): the calibrated view model."""
    inp = keras.Input((weights.shape[0],), name="features")
    dense = keras.layers.Dense(weights.shape[1], activation="sigmoid", name="probs")
    out = dense(inp)
    model = keras.Model(inp, out)
    dense.set_weights([weights.astype(np.float32), bias.astype(np.float32)])
    return model


def linear_softmax(weights: np.ndarray, bias: np.ndarray) -> keras.Model:
    """features (N, F) → softmax(features @ W + b): the density model."""
    inp = keras.Input((weights.shape[0],), name="features")
    dense = keras.layers.Dense(weights.shape[1], activation="softmax", name="probs")
    out = dense(inp)
    model = keras.Model(inp, out)
    dense.set_weights([weights.astype(np.float32), bias.astype(np.float32)])
    return model


def export_onnx(model: keras.Model, path: Path, input_name: str, output_name: str) -> float:
    """tf2onnx export through a tf.function; returns the max |keras - onnx| on random inputs."""
    import onnxruntime as ort
    import tf2onnx

    shape = (None, *model.input_shape[1:])
    spec = (tf.TensorSpec(shape, tf.float32, name=input_name),)

    def serve(x: Any) -> dict[str, Any]:
        return {output_name: model(x, training=False)}

    fn = tf.function(serve, input_signature=spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tf2onnx.convert.from_function(fn, input_signature=spec, opset=13, output_path=str(path))
    rng = np.random.default_rng(0)
    x = rng.random((16, *shape[1:])).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {input_name: x})[0]
    want = model.predict(x, verbose=0)
    return float(np.max(np.abs(got - want)))
