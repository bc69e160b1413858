"""The patch model (normal / benign / malignant tissue): training, patch-level metrics, the
export, and the output-activation comparison. Keras is imported by the functions that train.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bc_service.pipeline.features import PATCH_LABELS
from bc_service.train import data as tdata
from bc_service.train import metrics as tm
from bc_service.train.publish import write_patch
from bc_service.train.workspace import WORK, Config, load_json, model_folder, save_json

log = logging.getLogger("irmi.bc.train")

Patches = tuple[NDArray[np.float32], NDArray[np.int64]]  # (N, 64, 64, 1) patches, labels
PATCH_JSON, ACTIVATIONS_JSON = WORK / "patch.json", WORK / "activations.json"


def to_probabilities(outputs: NDArray[Any]) -> NDArray[np.float64]:
    """Outputs → probabilities (ReLU/Softplus heads are not normalised; an all-zero row
    becomes uniform)."""
    p = np.clip(np.asarray(outputs, np.float64), 0, None)
    total = p.sum(axis=1, keepdims=True)
    out: NDArray[np.float64] = np.where(
        total > 0, p / np.where(total > 0, total, 1), 1.0 / p.shape[1]
    )
    return out


def _predict(model: Any, x: NDArray[np.float32]) -> NDArray[np.float64]:
    return to_probabilities(model.predict(x, batch_size=256, verbose=0))


def fit_patch_model(
    cfg: Config,
    train_items: list[tdata.Prepared],
    val: Patches | None,
    epochs: int,
    activation: str = "softmax",
    seed: int = 0,
) -> tuple[Any, dict[str, list[float]]]:
    """Fresh patches each epoch (class-balanced weights); with ``val`` the weights of the
    epoch with the best val macro one-vs-rest AUC are kept."""
    import keras

    from bc_service.train.nets import patch_model

    model = patch_model(activation, seed=seed)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    hist: dict[str, list[float]] = {"loss": [], "val_loss": [], "val_macro_auc": []}
    best_auc, best_weights = -1.0, None
    for epoch in range(epochs):
        x, y = tdata.sample_patches(
            train_items,
            per_lesion=cfg.per_lesion,
            normal_per_image=cfg.normal_per_image,
            seed=seed * 1000 + epoch,
            augment=True,
        )
        counts = np.bincount(y, minlength=3).astype(np.float64)
        class_weight = {k: float(len(y) / (3 * max(counts[k], 1))) for k in range(3)}
        fitted = model.fit(
            x,
            np.eye(3, dtype=np.float32)[y],
            batch_size=128,
            epochs=1,
            verbose=0,
            class_weight=class_weight,
        )
        hist["loss"].append(float(fitted.history["loss"][0]))
        if val is not None:
            x_val, y_val = val
            p_val = _predict(model, x_val)
            val_loss = float(
                np.mean(-np.log(np.clip(p_val[np.arange(len(y_val)), y_val], 1e-7, 1)))
            )
            val_auc = tm.macro_auc(y_val, p_val)
            hist["val_loss"].append(val_loss)
            hist["val_macro_auc"].append(val_auc)
            log.info(
                "epoch %d loss %.4f val_loss %.4f val_auc %.4f",
                epoch,
                hist["loss"][-1],
                val_loss,
                val_auc,
            )
            if val_auc > best_auc:
                best_auc, best_weights = val_auc, model.get_weights()
    if best_weights is not None:
        model.set_weights(best_weights)
    return model, hist


def fixed_patches(items: list[tdata.Prepared], seed: int) -> Patches:
    """The same evaluation patches on every run (no augmentation)."""
    return tdata.sample_patches(items, per_lesion=10, normal_per_image=10, seed=seed, augment=False)


def patch_metrics(y: NDArray[np.int64], p: NDArray[np.float64]) -> dict[str, Any]:
    pred = p.argmax(axis=1)
    lesion = y > 0
    return {
        "n_patches": len(y),
        "per_class": {k: int((y == i).sum()) for i, k in enumerate(PATCH_LABELS)},
        "accuracy": tm.bootstrap_ci(tm.accuracy, y, pred),
        "auc_normal_vs_lesion": tm.bootstrap_ci(tm.auc, lesion.astype(int), 1 - p[:, 0]),
        "auc_benign_vs_malignant": tm.bootstrap_ci(
            tm.auc,
            (y[lesion] == 2).astype(int),
            p[lesion, 2] / (p[lesion, 1] + p[lesion, 2] + 1e-9),
        ),
        "macro_auc_one_vs_rest": round(tm.macro_auc(y, p), 4),
        "confusion": tm.confusion(y, pred, 3),
    }


def _splits(cfg: Config) -> tuple[list[tdata.Prepared], Patches, Patches]:
    """Train cases, and the fixed val and test patches."""
    items = tdata.prepare_all(cfg.data_dir / "mini-mias")
    return (
        tdata.by_split(items, "train"),
        fixed_patches(tdata.by_split(items, "val"), 1),
        fixed_patches(tdata.by_split(items, "test"), 2),
    )


def step_activations(cfg: Config) -> dict[str, Any]:
    """The report's Tables 6-8, on the patch model: the same network and budget with a ReLU,
    Softmax or Softplus output layer, trained with categorical cross-entropy."""
    train, val, test = _splits(cfg)
    out: dict[str, Any] = {"epochs": cfg.act_epochs, "rows": {}}
    for act in ("relu", "softmax", "softplus"):
        start = time.perf_counter()
        model, hist = fit_patch_model(cfg, train, val, cfg.act_epochs, activation=act, seed=7)
        p_test = _predict(model, test[0])
        p_val = _predict(model, val[0])
        raw = model.predict(test[0][:256], batch_size=256, verbose=0)
        out["rows"][act] = {
            "val_accuracy": round(tm.accuracy(val[1], p_val.argmax(1)), 4),
            "test_accuracy": tm.bootstrap_ci(tm.accuracy, test[1], p_test.argmax(1)),
            "test_macro_auc": round(tm.macro_auc(test[1], p_test), 4),
            "dead_outputs_share": round(float(np.mean(np.all(raw <= 1e-6, axis=1))), 4),
            "train_seconds": round(time.perf_counter() - start, 1),
            "history": hist,
        }
        log.info("activation %s: %s", act, out["rows"][act]["test_accuracy"])
    save_json(ACTIVATIONS_JSON, out)
    patch = load_json(PATCH_JSON)
    if patch is not None:
        write_patch(cfg, patch, out)
    return out


def step_patch(cfg: Config) -> dict[str, Any]:
    from bc_service.train.nets import export_onnx

    train, val, test = _splits(cfg)
    start = time.perf_counter()
    model, hist = fit_patch_model(cfg, train, val, cfg.patch_epochs, seed=cfg.seed)
    train_seconds = time.perf_counter() - start
    parity = export_onnx(model, model_folder("mammo-patch") / "model.onnx", "patches", "probs")
    _, y_train = tdata.sample_patches(
        train, per_lesion=5, normal_per_image=3, seed=3, augment=False
    )
    res = {
        "train_seconds": round(train_seconds, 1),
        "parity_max_abs_diff": parity,
        "history": hist,
        "val": patch_metrics(val[1], _predict(model, val[0])),
        "test": patch_metrics(test[1], _predict(model, test[0])),
        "train_counts": {k: int((y_train == i).sum()) for i, k in enumerate(PATCH_LABELS)},
        "params": int(model.count_params()),
    }
    save_json(PATCH_JSON, res)
    write_patch(cfg, res, load_json(ACTIVATIONS_JSON))
    return res
