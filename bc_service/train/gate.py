"""The mammogram validity gate: training on mammograms against other images, the threshold
on val, test figures per source, plots and the export. Keras is imported by the step."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bc_service.train import data as tdata
from bc_service.train import metrics as tm
from bc_service.train.publish import write_gate
from bc_service.train.workspace import WORK, Config, model_folder, save_json
from shared.train.plots import plot_confusion, plot_history, plot_roc


def step_gate(cfg: Config) -> dict[str, Any]:
    import keras

    from bc_service.train.nets import export_onnx, gate_model

    start = time.perf_counter()
    train, val, test = (
        tdata.gate_dataset(cfg.data_dir, s, seed=cfg.seed, max_chest=cfg.max_chest)
        for s in ("train", "val", "test")
    )
    load_seconds = time.perf_counter() - start
    model = gate_model(cfg.seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    share_positive = float(train.y.mean())
    class_weight = {0: 0.5 / (1 - share_positive), 1: 0.5 / share_positive}
    hist: dict[str, list[float]] = {"loss": [], "val_loss": []}
    best_loss, best_weights = 1e9, None
    rng = np.random.default_rng(cfg.seed)
    for _ in range(cfg.gate_epochs):
        order = rng.permutation(len(train.y))
        fitted = model.fit(
            train.x[order],
            train.y[order],
            batch_size=32,
            epochs=1,
            verbose=0,
            class_weight=class_weight,
        )
        val_loss = float(model.evaluate(val.x, val.y, verbose=0))
        hist["loss"].append(float(fitted.history["loss"][0]))
        hist["val_loss"].append(val_loss)
        if val_loss < best_loss:
            best_loss, best_weights = val_loss, model.get_weights()
    if best_weights is not None:
        model.set_weights(best_weights)
    train_seconds = time.perf_counter() - start
    folder = model_folder("mammo-gate")
    parity = export_onnx(model, folder / "model.onnx", "image", "p_mammogram")
    p_val = model.predict(val.x, verbose=0)[:, 0]
    p_test = model.predict(test.x, verbose=0)[:, 0]
    y_val, y_test = val.y.astype(int), test.y.astype(int)
    # Operating point chosen on val: Youden's J, capped at 0.5 (refusing a real mammogram
    # costs more than accepting a stray image, which the later stages still handle).
    threshold = float(min(0.5, tm.youden_threshold(y_val, p_val)))
    per_source = {}
    for source in sorted(set(test.source)):
        rows = np.array([s == source for s in test.source])
        per_source[source] = {
            "n": int(rows.sum()),
            "accepted_as_mammogram": round(float((p_test[rows] >= threshold).mean()), 4),
        }
    res = {
        "train_seconds": round(train_seconds, 1),
        "data_load_seconds": round(load_seconds, 1),
        "parity_max_abs_diff": parity,
        "threshold": round(threshold, 4),
        "counts": {
            s: {"mammograms": int(d.y.sum()), "others": int((1 - d.y).sum())}
            for s, d in (("train", train), ("val", val), ("test", test))
        },
        "test": {
            "auc": tm.bootstrap_ci(tm.auc, y_test, p_test),
            "at_threshold": tm.binary_at(y_test, p_test, threshold),
            "per_source": per_source,
        },
        "val_at_threshold": tm.binary_at(y_val, p_val, threshold),
        "history": hist,
    }
    plot_history([hist], folder / "training.png", "mammo-gate: loss")
    confusion = tm.confusion(y_test, (p_test >= threshold).astype(int), 2)
    plot_confusion(confusion, ["other", "mammogram"], folder / "confusion_test.png", "gate on test")
    plot_roc({"gate": (y_test, p_test)}, folder / "roc_test.png", "mammo-gate test ROC")
    save_json(WORK / "gate.json", res)
    write_gate(res)
    return res
