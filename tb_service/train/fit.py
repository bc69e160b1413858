"""Training loops (TensorFlow). Seeds fixed; the best epoch is chosen on ``val`` only."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from tb_service.train.metrics import roc_auc
from tb_service.train.nets import (
    Backbone,
    OutputActivation,
    build_chest_net,
    build_gate_net,
)

log = logging.getLogger("irmi.train")


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def limit_threads(n: int = 2) -> None:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised
        pass


@dataclass
class FitResult:
    model: keras.Model
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    best_val_auc: float = float("nan")
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)


def augment(x: NDArray[Any], rng: np.random.Generator, shift: int = 8) -> NDArray[np.float32]:
    """Random translation (reflect-padded crop) and mild intensity jitter, per sample."""
    n, s = x.shape[0], x.shape[1]
    padded = np.pad(
        x.astype(np.float32), ((0, 0), (shift, shift), (shift, shift), (0, 0)), "reflect"
    )
    out = np.empty((n, s, s, x.shape[3]), np.float32)
    offs = rng.integers(0, 2 * shift + 1, (n, 2))
    for i in range(n):
        oy, ox = offs[i]
        out[i] = padded[i, oy : oy + s, ox : ox + s]
    gain = rng.uniform(0.85, 1.15, (n, 1, 1, 1)).astype(np.float32)
    bias = rng.uniform(-0.15, 0.15, (n, 1, 1, 1)).astype(np.float32)
    return out * gain + bias


def predict_chest(model: keras.Model, x: NDArray[Any], batch: int = 128) -> dict[str, NDArray[Any]]:
    outs: dict[str, list[NDArray[Any]]] = {}
    for i in range(0, len(x), batch):
        res = model(tf.constant(x[i : i + batch].astype(np.float32)), training=False)
        for k, v in res.items():
            outs.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in outs.items()}


def predict_gate(model: keras.Model, x: NDArray[Any], batch: int = 256) -> NDArray[Any]:
    outs = [
        np.asarray(model(tf.constant(x[i : i + batch].astype(np.float32)), training=False))
        for i in range(0, len(x), batch)
    ]
    return np.concatenate(outs)


def _optimizer(lr: float, steps: int, epochs: int) -> keras.optimizers.Optimizer:
    sched = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps * epochs, alpha=0.05)
    return keras.optimizers.Adam(learning_rate=sched)


def _class_weights(y: NDArray[Any]) -> tf.Tensor:
    """n / (2 n_class) per class: both classes weigh the same in the loss."""
    counts = np.bincount(y.astype(int), minlength=2).astype(np.float32)
    return tf.constant(len(y) / (2.0 * np.maximum(counts, 1.0)), tf.float32)


@dataclass
class _Epochs:
    """One training run's epoch loop: shuffled mini-batches, a validation pass per epoch,
    and the weights of the best-scoring epoch kept."""

    model: keras.Model
    epochs: int
    batch: int
    tag: str
    # (batch indices) -> (loss, accuracy) of one optimiser step
    train_step: Callable[[NDArray[np.int64]], tuple[float, float]]
    # () -> P(positive) on the val images
    predict_val: Callable[[], NDArray[Any]]
    # (val AUC, val loss) -> the score that selects the epoch
    selection: Callable[[float, float], float]

    def run(self, n: int, y_val: NDArray[Any], rng: np.random.Generator) -> FitResult:
        steps = max(1, n // self.batch)
        hist: dict[str, list[float]] = {
            k: [] for k in ("loss", "acc", "val_loss", "val_acc", "val_auc")
        }
        best_score, best_epoch, best_weights = -1.0, 0, self.model.get_weights()
        start = time.perf_counter()
        y_true = y_val.astype(int)
        for epoch in range(self.epochs):
            order = rng.permutation(n)
            losses, accs = [], []
            for b in range(steps):
                loss, acc = self.train_step(order[b * self.batch : (b + 1) * self.batch])
                losses.append(loss)
                accs.append(acc)
            p_val = np.clip(self.predict_val(), 1e-7, 1 - 1e-7)
            val_loss = float(-np.mean(y_true * np.log(p_val) + (1 - y_true) * np.log(1 - p_val)))
            val_auc = roc_auc(y_true, p_val)
            hist["loss"].append(float(np.mean(losses)))
            hist["acc"].append(float(np.mean(accs)))
            hist["val_loss"].append(val_loss)
            hist["val_acc"].append(float(np.mean((p_val >= 0.5) == (y_true == 1))))
            hist["val_auc"].append(val_auc)
            score = self.selection(val_auc, val_loss)
            if np.isfinite(score) and score >= best_score:
                best_score, best_epoch, best_weights = score, epoch + 1, self.model.get_weights()
            log.info(
                "%s epoch %d/%d loss %.4f acc %.3f val_loss %.4f val_auc %.4f (%.0f s)",
                self.tag,
                epoch + 1,
                self.epochs,
                hist["loss"][-1],
                hist["acc"][-1],
                val_loss,
                val_auc,
                time.perf_counter() - start,
            )
        self.model.set_weights(best_weights)
        return FitResult(
            model=self.model,
            history=hist,
            best_epoch=best_epoch,
            best_val_auc=hist["val_auc"][best_epoch - 1] if best_epoch else float("nan"),
            seconds=time.perf_counter() - start,
        )


def _run_config(
    model: keras.Model, n: int, *, epochs: int, batch: int, lr: float, seed: int, shift: int
) -> dict[str, Any]:
    """What the card records of a run's set-up (``shift`` as passed to :func:`augment`)."""
    return {
        "epochs": epochs,
        "batch": batch,
        "lr": lr,
        "seed": seed,
        "optimizer": "Adam + cosine decay",
        "augmentation": f"random shift +-{shift} px (reflect), gain 0.85-1.15, bias +-0.15",
        "params": int(model.count_params()),
        "train_images": int(n),
    }


def _accuracy(probs: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    hits = tf.equal(tf.argmax(probs, axis=1, output_type=tf.int32), y)
    return tf.reduce_mean(tf.cast(hits, tf.float32))


def train_chest(
    x_train: NDArray[Any],
    y_abn: NDArray[Any],
    y_sub: NDArray[Any],
    x_val: NDArray[Any],
    y_val: NDArray[Any],
    *,
    size: int,
    backbone: Backbone = "vgg",
    activation: OutputActivation = "softmax",
    epochs: int = 15,
    batch: int = 32,
    lr: float = 2e-3,
    sub_weight: float = 0.5,
    seed: int = 42,
    tag: str = "",
) -> FitResult:
    """Two heads: abnormality (all images, class-balanced) and subtype (masked to Kermany
    pneumonia, ``y_sub`` = -1 elsewhere). Keeps the weights of the best val-AUC epoch."""
    set_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_chest_net(size, backbone, activation)
    n = len(x_train)
    opt = _optimizer(lr, max(1, n // batch), epochs)
    class_w = _class_weights(y_abn)

    def chest_step(
        x: tf.Tensor, y_abn_batch: tf.Tensor, y_sub_batch: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            ce_abn = keras.losses.sparse_categorical_crossentropy(y_abn_batch, out["abn"])
            loss_abn = tf.reduce_mean(ce_abn * tf.gather(class_w, y_abn_batch))
            mask = tf.cast(y_sub_batch >= 0, tf.float32)
            ce_sub = keras.losses.sparse_categorical_crossentropy(
                tf.maximum(y_sub_batch, 0), out["sub"]
            )
            loss_sub = tf.reduce_sum(ce_sub * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
            loss = loss_abn + sub_weight * loss_sub
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss_abn, _accuracy(out["abn"], y_abn_batch)

    step = tf.function(chest_step, reduce_retracing=True)

    def train_step(idx: NDArray[np.int64]) -> tuple[float, float]:
        loss, acc = step(
            tf.constant(augment(x_train[idx], rng, shift=8)),
            tf.constant(y_abn[idx].astype(np.int32)),
            tf.constant(y_sub[idx].astype(np.int32)),
        )
        return float(loss), float(acc)

    loop = _Epochs(
        model,
        epochs,
        batch,
        tag,
        train_step,
        predict_val=lambda: predict_chest(model, x_val)["abn"][:, 1],
        selection=lambda auc, _loss: auc,
    )
    fit = loop.run(n, y_val, rng)
    fit.config = {
        "backbone": backbone,
        "output_activation": activation,
        "subtype_loss_weight": sub_weight,
        "class_weights": [float(v) for v in class_w.numpy()],
        **_run_config(model, n, epochs=epochs, batch=batch, lr=lr, seed=seed, shift=8),
    }
    return fit


def train_gate(
    x_train: NDArray[Any],
    y_train: NDArray[Any],
    x_val: NDArray[Any],
    y_val: NDArray[Any],
    *,
    size: int,
    epochs: int = 8,
    batch: int = 32,
    lr: float = 2e-3,
    seed: int = 7,
) -> FitResult:
    """Chest X-ray or not, class-balanced. Keeps the best val-AUC epoch; ties (AUC 1.0 is
    common here) go to the lowest val loss."""
    set_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_gate_net(size)
    n = len(x_train)
    opt = _optimizer(lr, max(1, n // batch), epochs)
    class_w = _class_weights(y_train)

    def gate_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            ce = keras.losses.sparse_categorical_crossentropy(y, p)
            loss = tf.reduce_mean(ce * tf.gather(class_w, y))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss, _accuracy(p, y)

    step = tf.function(gate_step, reduce_retracing=True)

    def train_step(idx: NDArray[np.int64]) -> tuple[float, float]:
        x_batch = augment(x_train[idx], rng, shift=4)
        loss, acc = step(tf.constant(x_batch), tf.constant(y_train[idx].astype(np.int32)))
        return float(loss), float(acc)

    loop = _Epochs(
        model,
        epochs,
        batch,
        "gate",
        train_step,
        predict_val=lambda: predict_gate(model, x_val)[:, 1],
        selection=lambda auc, loss: auc - 1e-3 * loss,
    )
    fit = loop.run(n, y_val, rng)
    fit.config = _run_config(model, n, epochs=epochs, batch=batch, lr=lr, seed=seed, shift=4)
    return fit
