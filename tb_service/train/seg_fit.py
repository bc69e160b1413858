"""The lung segmentation network (a small U-Net) and its training loop (TensorFlow).

Augmentation is anatomical: small rotation, anisotropic scale (zoom out to the wider fields of
other hospitals' and children's films), shift; then acquisition: gamma, contrast, brightness,
blur or sharpening, noise, JPEG recompression. No left/right flip: the heart and the left lung's
smaller area are part of what a plausible mask looks like. The epoch is chosen on val Dice.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from tb_service.train.fit import set_seed
from tb_service.train.seg_data import dice

log = logging.getLogger("irmi.train")

AUGMENTATION = (
    "rotation +-10 deg, scale 0.65-1.15 per axis, shift +-8%, gamma 0.6-1.6, contrast 0.7-1.3, "
    "brightness +-20, Gaussian blur sigma 0-1.5 or unsharp mask (1/3 each), Gaussian noise "
    "sigma 0-8, JPEG quality 40-95 (half the samples); no left/right flip"
)


def _conv_block(x: Any, filters: int, name: str) -> Any:
    for k in range(2):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_c{k}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{k}")(x)
        x = keras.layers.ReLU(name=f"{name}_r{k}")(x)
    return x


def build_unet(size: int, base: int = 8, depth: int = 4) -> keras.Model:
    """U-Net: ``depth`` down/up levels of two 3x3 conv-BN-ReLU, ``base`` filters doubling."""
    inp = keras.Input((size, size, 1), name="image")
    x, skips = inp, []
    for d in range(depth):
        x = _conv_block(x, base * 2**d, f"down{d}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(name=f"pool{d}")(x)
    x = _conv_block(x, base * 2**depth, "bottom")
    for d in reversed(range(depth)):
        x = keras.layers.Conv2DTranspose(base * 2**d, 2, strides=2, name=f"up{d}")(x)
        x = keras.layers.Concatenate(name=f"cat{d}")([x, skips[d]])
        x = _conv_block(x, base * 2**d, f"dec{d}")
    out = keras.layers.Conv2D(1, 1, activation="sigmoid", name="lung")(x)
    return keras.Model(inp, out, name="lung_unet")


def augment_pair(
    img: NDArray[np.uint8], mask: NDArray[np.float32], size: int, rng: np.random.Generator
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """One augmented (z-scored image, binary mask), both (size, size), from a (2 size)^2 pair."""
    s2 = img.shape[0]
    c = s2 / 2.0
    angle = float(rng.uniform(-10, 10))
    sx, sy = (float(v) for v in rng.uniform(0.65, 1.15, 2))
    tx, ty = (float(v) for v in rng.uniform(-0.08, 0.08, 2) * s2)
    rot = cv2.getRotationMatrix2D((c, c), angle, 1.0)
    m = np.diag([sx, sy]) @ rot[:, :2]
    offset = np.array([c, c]) - m @ np.array([c, c]) + np.array([tx, ty])
    affine = np.hstack([m, offset[:, None]]).astype(np.float64)
    fill = int(np.percentile(img, 5))
    im = cv2.warpAffine(
        img,
        affine,
        (s2, s2),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill,
    ).astype(np.float32)
    mk = cv2.warpAffine(mask, affine, (s2, s2), flags=cv2.INTER_LINEAR, borderValue=0.0)
    # Acquisition: gamma, contrast, brightness, blur / sharpen, noise, JPEG.
    im = 255.0 * (np.clip(im, 0, 255) / 255.0) ** float(rng.uniform(0.6, 1.6))
    im = (im - im.mean()) * float(rng.uniform(0.7, 1.3)) + im.mean() + float(rng.uniform(-20, 20))
    choice = int(rng.integers(0, 3))
    if choice == 1:
        im = cv2.GaussianBlur(im, (0, 0), float(rng.uniform(0.3, 1.5)))
    elif choice == 2:
        soft = cv2.GaussianBlur(im, (0, 0), 1.5)
        im = im + float(rng.uniform(0.3, 1.0)) * (im - soft)
    im = im + rng.normal(0, float(rng.uniform(0, 8)), im.shape).astype(np.float32)
    u8 = np.clip(im, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        q = int(rng.integers(40, 96))
        ok, enc = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            u8 = cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE)
    small = cv2.resize(u8, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    small = (small - small.mean()) / max(float(small.std()), 1e-3)
    target = cv2.resize(mk, (size, size), interpolation=cv2.INTER_AREA) >= 0.5
    return small, target.astype(np.float32)


def predict(model: keras.Model, x: NDArray[Any], batch: int = 16) -> NDArray[np.float32]:
    """P(lung) (N, S, S) for z-scored images (N, S, S, 1)."""
    outs = [
        np.asarray(model(tf.constant(x[i : i + batch].astype(np.float32)), training=False))
        for i in range(0, len(x), batch)
    ]
    return np.concatenate(outs)[..., 0].astype(np.float32)


@dataclass
class SegFit:
    model: keras.Model
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)


def train_unet(
    pairs: list[tuple[NDArray[np.uint8], NDArray[np.float32]]],
    x_val: NDArray[np.float32],
    y_val: NDArray[np.bool_],
    *,
    size: int,
    epochs: int = 60,
    batch: int = 8,
    lr: float = 3e-3,
    base: int = 8,
    seed: int = 13,
) -> SegFit:
    """Train on augmented ``pairs`` ((2 size)^2 uint8 image, float mask); keep the epoch with
    the best mean val Dice at 0.5 (val images as the pipeline makes them, (N, S, S, 1))."""
    set_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_unet(size, base=base)
    n = len(pairs)
    steps = max(1, n // batch)
    sched = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps * epochs, alpha=0.05)
    opt = keras.optimizers.Adam(learning_rate=sched)

    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            bce = tf.reduce_mean(keras.losses.binary_crossentropy(y, p))
            inter = tf.reduce_sum(p * y, axis=[1, 2, 3])
            denom = tf.reduce_sum(p + y, axis=[1, 2, 3])
            soft_dice = tf.reduce_mean((2.0 * inter + 1.0) / (denom + 1.0))
            loss = bce + (1.0 - soft_dice)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    train_step = tf.function(step, reduce_retracing=True)
    hist: dict[str, list[float]] = {"loss": [], "val_dice": []}
    best, best_epoch, best_weights = -1.0, 0, model.get_weights()
    start = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(n)
        losses = []
        for b in range(steps):
            idx = order[b * batch : (b + 1) * batch]
            xs, ys = zip(
                *(augment_pair(pairs[i][0], pairs[i][1], size, rng) for i in idx), strict=True
            )
            x = tf.constant(np.stack(xs)[..., None])
            y = tf.constant(np.stack(ys)[..., None])
            losses.append(float(train_step(x, y)))
        p = predict(model, x_val)
        val_dice = float(np.mean([dice(p[i] >= 0.5, y_val[i]) for i in range(len(p))]))
        hist["loss"].append(float(np.mean(losses)))
        hist["val_dice"].append(val_dice)
        if val_dice >= best:
            best, best_epoch, best_weights = val_dice, epoch + 1, model.get_weights()
        log.info(
            "lung-seg epoch %d/%d loss %.4f val_dice %.4f (%.0f s)",
            epoch + 1,
            epochs,
            hist["loss"][-1],
            val_dice,
            time.perf_counter() - start,
        )
    model.set_weights(best_weights)
    return SegFit(
        model=model,
        history=hist,
        best_epoch=best_epoch,
        seconds=time.perf_counter() - start,
        config={
            "architecture": f"U-Net, 4 levels, {base}-{base * 16} filters, conv-BN-ReLU x2",
            "loss": "binary cross-entropy + (1 - soft Dice)",
            "epochs": epochs,
            "batch": batch,
            "lr": lr,
            "optimizer": "Adam + cosine decay",
            "seed": seed,
            "augmentation": AUGMENTATION,
            "params": int(model.count_params()),
            "train_images": n,
            "epoch_rule": "best mean val Dice at threshold 0.5",
        },
    )
