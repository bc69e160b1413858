"""Keras 3 networks (TensorFlow backend, random initialisation: no ImageNet weights here).

* ``vgg``: a VGG-style stack of 3x3 conv + BN + ReLU with max-pooling, narrow enough for this
  shared 2-core CPU (a stride-2 stem, then widths 24-48-96, 5 conv layers; the report froze a
  full ImageNet VGG16, ~300x the compute, whose weights cannot be downloaded here).
* ``mobilenet``: MobileNetV2-style inverted residual blocks (expansion 3, depthwise 3x3).

Both end in an 8x8 feature map (for a 128 px input) followed by global average pooling and
linear heads, so the class-activation map is exact: CAM = features . (w_abnormal - w_normal).
"""

from __future__ import annotations

from typing import Any, Literal

import keras
from keras import layers

Backbone = Literal["vgg", "mobilenet"]
OutputActivation = Literal["softmax", "relu", "softplus"]


def _cbr(x: Any, filters: int, stride: int = 1, name: str = "") -> Any:
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def vgg_backbone(x: Any, widths: tuple[int, ...] = (24, 48, 96)) -> Any:
    """Stride-2 3x3 stem, then VGG stages (3x3 conv + BN + ReLU, 2x2 max-pool)."""
    x = _cbr(x, 16, stride=2, name="vgg_stem")
    convs = (1, 1, 2)
    for s, (w, n) in enumerate(zip(widths, convs, strict=True)):
        for c in range(n):
            x = _cbr(x, w, name=f"vgg{s}_{c}")
        x = layers.MaxPooling2D(name=f"vgg{s}_pool")(x)
    return x


def _inverted(x: Any, out: int, stride: int, expand: int, name: str) -> Any:
    cin = x.shape[-1]
    h = layers.Conv2D(cin * expand, 1, use_bias=False, name=f"{name}_exp")(x)
    h = layers.BatchNormalization(name=f"{name}_exp_bn")(h)
    h = layers.ReLU(6.0, name=f"{name}_exp_relu")(h)
    h = layers.DepthwiseConv2D(
        3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw"
    )(h)
    h = layers.BatchNormalization(name=f"{name}_dw_bn")(h)
    h = layers.ReLU(6.0, name=f"{name}_dw_relu")(h)
    h = layers.Conv2D(out, 1, use_bias=False, name=f"{name}_proj")(h)
    h = layers.BatchNormalization(name=f"{name}_proj_bn")(h)
    if stride == 1 and cin == out:
        h = layers.Add(name=f"{name}_add")([x, h])
    return h


def mobilenet_backbone(x: Any) -> Any:
    x = _cbr(x, 16, stride=2, name="mb_stem")  # 64
    cfg = [(24, 2), (24, 1), (32, 2), (32, 1), (64, 2), (64, 1), (96, 1)]  # -> 8x8
    for i, (out, stride) in enumerate(cfg):
        x = _inverted(x, out, stride, expand=3, name=f"mb{i}")
    x = layers.Conv2D(128, 1, use_bias=False, name="mb_head")(x)
    x = layers.BatchNormalization(name="mb_head_bn")(x)
    return layers.ReLU(6.0, name="mb_head_relu")(x)


def build_chest_net(
    size: int,
    backbone: Backbone = "vgg",
    activation: OutputActivation = "softmax",
    dropout: float = 0.3,
    widths: tuple[int, ...] = (24, 48, 96),
) -> keras.Model:
    """Outputs: ``abn`` probabilities [normal, abnormal], ``sub`` [bacterial, viral],
    ``features`` (N, h, w, C) and ``abn_logits`` (pre-activation of the abnormality head).
    ``widths``: the VGG stages' widths (ignored by the MobileNet backbone)."""
    inp = keras.Input((size, size, 1), name="image")
    feats = vgg_backbone(inp, widths) if backbone == "vgg" else mobilenet_backbone(inp)
    pooled = layers.GlobalAveragePooling2D(name="gap")(feats)
    drop = layers.Dropout(dropout, name="drop")(pooled)
    abn_logits = layers.Dense(2, name="abn_dense")(drop)
    if activation == "softmax":
        abn = layers.Softmax(name="abn")(abn_logits)
    else:
        act = layers.Activation(activation, name="abn_act")(abn_logits)
        # ReLU / Softplus outputs are made a distribution by dividing by their sum (the
        # report's Tables 3-5 compare these output activations on one network).
        abn = layers.Lambda(
            lambda a: (a + 1e-7) / keras.ops.sum(a + 1e-7, axis=-1, keepdims=True), name="abn"
        )(act)
    sub = layers.Softmax(name="sub")(layers.Dense(2, name="sub_dense")(drop))
    return keras.Model(inp, {"abn": abn, "sub": sub, "features": feats, "abn_logits": abn_logits})


def build_gate_net(size: int) -> keras.Model:
    inp = keras.Input((size, size, 1), name="image")
    x = inp
    for i, w in enumerate((16, 32, 64)):
        x = _cbr(x, w, name=f"gate{i}")
        x = layers.MaxPooling2D(name=f"gate{i}_pool")(x)
    x = _cbr(x, 64, name="gate3")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.2, name="drop")(x)
    out = layers.Dense(2, activation="softmax", name="probs")(x)
    return keras.Model(inp, out)
