"""The robust chest training loop (TensorFlow): balanced (source x label) batches, acquisition
augmentation of the cached crops followed by the served tail, an optional adversarial source
head behind a gradient reversal, the best epoch chosen on the mean within-source val AUC."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tb_service.train.fit import FitResult, _optimizer, limit_threads, predict_chest, set_seed

import keras  # isort: skip  (after fit: it sets the TF log level)
import tensorflow as tf  # isort: skip

from shared.transforms import Compose
from tb_service.preprocess import INPUT_SIZE, ChestInput
from tb_service.train.acquisition import AcquisitionAugment
from tb_service.train.crops import CropCache, tail_inputs
from tb_service.train.metrics import roc_auc
from tb_service.train.nets import build_chest_net
from tb_service.train.sampling import BalancedSampler
from tb_service.train.variants import Variant

log = logging.getLogger("irmi.train")

__all__ = ["augmented_inputs", "embeddings", "train_robust", "within_source_auc"]


def augmented_inputs(
    c: CropCache,
    idx: NDArray[np.int64],
    tail: Compose[ChestInput],
    aug: AcquisitionAugment | None,
    rng: np.random.Generator,
) -> NDArray[np.float32]:
    """Network inputs of crops ``idx``, each augmented (when ``aug``) then run through the tail."""
    out = []
    for i in (int(j) for j in idx):
        px = c.crop(i) if aug is None else aug(c.crop(i), rng)
        out.append(tail(c.work(i, px)).image)
    return np.stack(out).astype(np.float32)


def embeddings(model: keras.Model, x: NDArray[Any]) -> NDArray[np.float32]:
    """The pooled penultimate features (what the ONNX ``embedding`` output holds)."""
    feats = predict_chest(model, x)["features"]
    return np.asarray(feats.mean(axis=(1, 2)), np.float32)


def within_source_auc(y: NDArray[Any], p: NDArray[Any], source: NDArray[Any]) -> float:
    """Mean over sources of the AUC inside each source (a source shortcut earns nothing)."""
    aucs = [roc_auc(y[source == s], p[source == s]) for s in np.unique(source)]
    return float(np.mean(aucs))


def _reversed(x: tf.Tensor, weight: float) -> tf.Tensor:
    """Identity forward; the gradient is multiplied by ``-weight`` (gradient reversal)."""
    return tf.stop_gradient((1.0 + weight) * x) - weight * x


def train_robust(
    c: CropCache,
    train_idx: NDArray[np.int64],
    val_idx: NDArray[np.int64],
    tail: Compose[ChestInput],
    variant: Variant,
    *,
    epochs: int = 10,
    batch: int = 32,
    lr: float = 2e-3,
    sub_weight: float = 0.5,
    seed: int = 42,
    tag: str = "",
) -> FitResult:
    """Train ``variant`` on crops ``train_idx``; keep the epoch of the best mean within-source
    AUC on ``val_idx``."""
    limit_threads()
    set_seed(seed)
    rng = np.random.default_rng(seed)
    sources = c.dataset[train_idx]
    y_abn = c.abnormal[train_idx].astype(np.int32)
    y_sub = c.subtype[train_idx].astype(np.int32)
    names = sorted({str(s) for s in sources})
    y_src = np.array([names.index(str(s)) for s in sources], np.int32)
    sampler = BalancedSampler(sources, y_abn, batch)
    model = build_chest_net(INPUT_SIZE, "vgg", "softmax", widths=variant.widths)
    use_adv = variant.adversary > 0 and len(names) > 1
    adv = keras.Sequential(
        [keras.layers.Dense(32, activation="relu"), keras.layers.Dense(len(names))], name="adv"
    )
    adv.build((None, variant.widths[-1]))
    params = model.trainable_variables + (adv.trainable_variables if use_adv else [])
    opt = _optimizer(lr, sampler.steps, epochs)
    aug = AcquisitionAugment() if variant.augment else None
    x_val = tail_inputs(c, val_idx, tail)
    y_val, src_val = c.abnormal[val_idx].astype(int), c.dataset[val_idx]

    def step_fn(
        x: tf.Tensor, ya: tf.Tensor, ys: tf.Tensor, yd: tf.Tensor, ramp: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss_abn = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(ya, out["abn"]))
            mask = tf.cast(ys >= 0, tf.float32)
            ce_sub = keras.losses.sparse_categorical_crossentropy(tf.maximum(ys, 0), out["sub"])
            loss = loss_abn + sub_weight * tf.reduce_sum(ce_sub * mask) / tf.maximum(
                tf.reduce_sum(mask), 1.0
            )
            adv_loss = tf.constant(0.0)
            if use_adv:
                pooled = tf.reduce_mean(out["features"], axis=[1, 2])
                logits = adv(_reversed(pooled, variant.adversary * ramp), training=True)
                adv_loss = tf.reduce_mean(
                    keras.losses.sparse_categorical_crossentropy(yd, logits, from_logits=True)
                )
                loss = loss + adv_loss
        grads = tape.gradient(loss, params)
        opt.apply_gradients(zip(grads, params, strict=True))
        return loss_abn, adv_loss

    step = tf.function(step_fn, reduce_retracing=True)
    hist: dict[str, list[float]] = {k: [] for k in ("loss", "adv_loss", "val_auc", "val_loss")}
    best, best_epoch, best_weights = -1.0, 0, model.get_weights()
    start = time.perf_counter()
    for epoch in range(epochs):
        ramp = tf.constant(min(1.0, (epoch + 1) / max(1, epochs // 2)), tf.float32)
        losses, adv_losses = [], []
        for idx in sampler.epoch(rng):
            x = augmented_inputs(c, train_idx[idx], tail, aug, rng)
            la, ld = step(
                tf.constant(x),
                tf.constant(y_abn[idx]),
                tf.constant(y_sub[idx]),
                tf.constant(y_src[idx]),
                ramp,
            )
            losses.append(float(la))
            adv_losses.append(float(ld))
        p = np.clip(predict_chest(model, x_val)["abn"][:, 1], 1e-7, 1 - 1e-7)
        auc = within_source_auc(y_val, p, src_val)
        val_loss = float(-np.mean(y_val * np.log(p) + (1 - y_val) * np.log(1 - p)))
        for k, v in (
            ("loss", float(np.mean(losses))),
            ("adv_loss", float(np.mean(adv_losses))),
            ("val_auc", auc),
            ("val_loss", val_loss),
        ):
            hist[k].append(v)
        if np.isfinite(auc) and auc >= best:
            best, best_epoch, best_weights = auc, epoch + 1, model.get_weights()
        log.info(
            "%s epoch %d/%d loss %.4f adv %.4f val_loss %.4f val_auc(within) %.4f (%.0f s)",
            tag,
            epoch + 1,
            epochs,
            hist["loss"][-1],
            hist["adv_loss"][-1],
            val_loss,
            auc,
            time.perf_counter() - start,
        )
    model.set_weights(best_weights)
    return FitResult(
        model=model,
        history=hist,
        best_epoch=best_epoch,
        best_val_auc=best,
        seconds=time.perf_counter() - start,
        config={
            "variant": variant.name,
            "backbone": "vgg",
            "widths": list(variant.widths),
            "adversary_weight": variant.adversary if use_adv else 0.0,
            "epochs": epochs,
            "batch": batch,
            "lr": lr,
            "seed": seed,
            "optimizer": "Adam + cosine decay",
            "subtype_loss_weight": sub_weight,
            "sampling": "balanced over source x label (BalancedSampler)",
            "augmentation": aug.describe() if aug else "none",
            "epoch_selection": "mean within-source val AUC",
            "params": int(model.count_params()),
            "train_images": len(train_idx),
            "train_sources": names,
        },
    )
