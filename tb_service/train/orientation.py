"""``python -m tb_service.train orientation``: the chest-orientation model.

A small network (the gate's convolutional stack on the gate's 64 px input, with a flattened
4x4 head instead of global pooling, because orientation IS layout) classifies the 8 dihedral
transforms of a chest film (:mod:`tb_service.orientation`). Self-supervised: every film of the
train splits of nih-cxr14 and kermany-pediatric, in each transform. The epoch and both
thresholds are chosen on the val splits; the test splits and the evaluation-only tbx11k and
hannover-covid19 are only reported. Writes ``tb_service/models/chest-orientation/1/``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tb_service.orientation import LABELS, N_TRANSFORMS, Thresholds, decide
from tb_service.preprocess import GATE_INPUT_SIZE
from tb_service.train import metrics as M  # noqa: N812
from tb_service.train.orientation_data import (
    EVAL_ONLY,
    TRAIN_SETS,
    OrientationCache,
    build_orientation_cache,
)
from tb_service.train.results import MODELS, RESULTS, save_json

log = logging.getLogger("irmi.train")

NAME, VERSION = "chest-orientation", "1"
ROTATION_MAX_CONFIDENT_ERROR = 0.005  # val: wrong turns among confident decisions
MIRROR_MAX_FALSE_FLAGS = 0.02  # val: share of unmirrored films flagged mirrored
ROTATION_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99)


def build_orientation_net(size: int = GATE_INPUT_SIZE) -> Any:
    import keras
    from keras import layers

    from tb_service.train.nets import _cbr

    inp = keras.Input((size, size, 1), name="image")
    x = inp
    for i, w in enumerate((16, 32, 64, 64)):
        x = _cbr(x, w, name=f"orient{i}")
        x = layers.MaxPooling2D(name=f"orient{i}_pool")(x)
    x = _cbr(x, 32, name="orient_head")  # (S/16)^2 x 32 = 512 features for a 64 px input
    x = layers.Flatten(name="flat")(x)
    x = layers.Dropout(0.3, name="drop")(x)
    out = layers.Dense(N_TRANSFORMS, activation="softmax", name="probs")(x)
    return keras.Model(inp, out)


def _as_input(x: NDArray[np.uint8]) -> NDArray[np.float32]:
    return (x.astype(np.float32) / 255.0)[..., None]


def predict_all(model: Any, x: NDArray[np.uint8], batch: int = 512) -> NDArray[np.float32]:
    """(n, 8, 8): the probabilities of every film in every transform."""
    from tb_service.train.fit import predict_gate

    flat = x.reshape(-1, x.shape[-2], x.shape[-1])
    p = predict_gate(model, _as_input(flat), batch=batch)
    return np.asarray(p, np.float32).reshape(x.shape[0], N_TRANSFORMS, N_TRANSFORMS)


def train(
    c: OrientationCache, *, epochs: int, per_film: int = 6, seed: int = 7
) -> tuple[Any, dict[str, Any]]:
    import keras

    from tb_service.train.fit import augment, set_seed

    set_seed(seed)
    rng = np.random.default_rng(seed)
    tr, va = c.where("train", TRAIN_SETS), c.where("val", TRAIN_SETS)
    xtr, xva = c.x[tr], c.x[va]
    model = build_orientation_net(c.x.shape[-1])
    batch = 64
    steps = max(1, len(xtr) * per_film // batch)
    sched = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=steps * epochs, alpha=0.05)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=sched),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    hist: dict[str, list[float]] = {"loss": [], "acc": [], "val_acc": []}
    best, best_epoch, best_weights = -1.0, 0, model.get_weights()
    start = time.perf_counter()
    for epoch in range(epochs):
        films = np.repeat(np.arange(len(xtr)), per_film)
        ts = rng.integers(0, N_TRANSFORMS, len(films))
        xb = augment(_as_input(xtr[films, ts]), rng, shift=4)
        h = model.fit(xb, ts, batch_size=batch, epochs=1, shuffle=True, verbose=0)
        p = predict_all(model, xva)
        acc = float((p.argmax(-1) == np.arange(N_TRANSFORMS)[None]).mean())
        hist["loss"].append(float(h.history["loss"][-1]))
        hist["acc"].append(float(h.history["accuracy"][-1]))
        hist["val_acc"].append(acc)
        log.info("orientation epoch %d: loss %.4f val acc %.4f", epoch + 1, hist["loss"][-1], acc)
        if acc > best:
            best, best_epoch, best_weights = acc, epoch + 1, model.get_weights()
    model.set_weights(best_weights)
    info = {
        "history": hist,
        "best_epoch": best_epoch,
        "train_seconds": round(time.perf_counter() - start, 1),
        "config": {
            "epochs": epochs,
            "batch": batch,
            "transforms_per_film_per_epoch": per_film,
            "lr": 2e-3,
            "seed": seed,
            "optimizer": "Adam + cosine decay",
            "augmentation": "random shift +-4 px (reflect), gain 0.85-1.15, bias +-0.15",
            "params": int(model.count_params()),
            "train_films": len(xtr),
        },
    }
    return model, info


def choose_thresholds(p: NDArray[np.float32]) -> tuple[Thresholds, dict[str, Any]]:
    """Both thresholds from the val probabilities (n, 8, 8)."""
    true_k = np.tile(np.arange(N_TRANSFORMS) % 4, (p.shape[0], 1))
    p_rot = p[..., :4] + p[..., 4:]
    k, conf = p_rot.argmax(-1), p_rot.max(-1)
    t_rot = ROTATION_GRID[-1]
    for t in ROTATION_GRID:
        sure = conf >= t
        if sure.any() and float((k[sure] != true_k[sure]).mean()) <= ROTATION_MAX_CONFIDENT_ERROR:
            t_rot = t
            break
    p_mirror = p[..., 4:].sum(-1)
    unmirrored = p_mirror[:, :4].ravel()
    t_mirror = max(0.5, float(np.quantile(unmirrored, 1.0 - MIRROR_MAX_FALSE_FLAGS)))
    t_mirror = min(round(t_mirror + 5e-7, 6), 0.999999)
    rules = {
        "rotation": f"smallest of {list(ROTATION_GRID)} at which at most "
        f"{ROTATION_MAX_CONFIDENT_ERROR:.1%} of confident val decisions turn the film wrongly",
        "mirrored": f"at most {MIRROR_MAX_FALSE_FLAGS:.0%} of unmirrored val films flagged "
        "(the val quantile), at least 0.5",
    }
    return Thresholds(rotation=float(t_rot), mirrored=float(t_mirror)), rules


def evaluate(p: NDArray[np.float32], th: Thresholds) -> dict[str, Any]:
    """The orientation table of one set of films (n, 8, 8), as served (with thresholds)."""
    n = p.shape[0]
    dec = [[decide(p[i, t], th) for t in range(N_TRANSFORMS)] for i in range(n)]
    k = np.array([[d.k for d in row] for row in dec])
    unsure = np.array([[d.uncertain for d in row] for row in dec])
    mir = np.array([[d.mirrored for d in row] for row in dec])
    true_k = np.tile(np.arange(N_TRANSFORMS) % 4, (n, 1))
    true_m = np.tile(np.arange(N_TRANSFORMS) >= 4, (n, 1))
    turned = ~unsure & (k == true_k)
    wrong = ~unsure & (k != true_k)
    out: dict[str, Any] = {
        "films": n,
        "accuracy_8way": M.proportion_ci((p.argmax(-1) == np.arange(N_TRANSFORMS)[None]).ravel()),
        "rotation": {},
        "mirror_detected": M.proportion_ci(mir[true_m]),
        "mirror_false_flag": M.proportion_ci(mir[~true_m]),
        "upright_flagged": M.proportion_ci((unsure | mir)[:, 0].ravel()),
    }
    for r in range(4):
        m = true_k == r
        out["rotation"][str(90 * r)] = {
            "correct": M.proportion_ci(turned[m]),
            "uncertain": round(float(unsure[m].mean()), 4),
            "wrong_turn": round(float(wrong[m].mean()), 4),
        }
    return out


def confusion(p: NDArray[np.float32]) -> list[list[int]]:
    pred = p.argmax(-1).ravel()
    true = np.tile(np.arange(N_TRANSFORMS), p.shape[0])
    cm = np.zeros((N_TRANSFORMS, N_TRANSFORMS), int)
    np.add.at(cm, (true, pred), 1)
    return [[int(v) for v in row] for row in cm]


def cmd_orientation(
    data_dir: Path | None = None, epochs: int = 20, *, reuse: bool = False
) -> dict[str, Any]:
    """Train (or, with ``reuse``, reload the last trained network from var/results), choose
    the thresholds on val, evaluate, export and write the model folder."""
    import json

    import keras

    from tb_service.train.export import gate_graph, parity, to_onnx
    from tb_service.train.fit import limit_threads
    from tb_service.train.orientation_report import write_orientation

    limit_threads()
    c = build_orientation_cache(data_dir)
    saved, saved_info = RESULTS / "orientation.keras", RESULTS / "orientation_train.json"
    if reuse and saved.exists() and saved_info.exists():
        model, info = keras.models.load_model(saved), json.loads(saved_info.read_text())
    else:
        model, info = train(c, epochs=epochs)
        RESULTS.mkdir(parents=True, exist_ok=True)
        model.save(saved)
        saved_info.write_text(json.dumps(info))
    pva = predict_all(model, c.x[c.where("val", TRAIN_SETS)])
    th, rules = choose_thresholds(pva)
    tables: dict[str, Any] = {}
    test_parts = []
    for ds in TRAIN_SETS:
        m = c.where("test", (ds,))
        if m.any():
            pt = predict_all(model, c.x[m])
            test_parts.append(pt)
            tables[f"{ds} (test)"] = evaluate(pt, th)
    pooled = np.concatenate(test_parts)
    tables["pooled test"] = evaluate(pooled, th)
    for ds in EVAL_ONLY:
        m = c.where("eval", (ds,))
        if m.any():
            tables[f"{ds} (all, evaluation only)"] = evaluate(predict_all(model, c.x[m]), th)
    folder = MODELS / NAME / VERSION
    graph = gate_graph(model, c.x.shape[-1])
    to_onnx(graph, folder / "model.onnx")
    sample = _as_input(c.x[c.where("test", TRAIN_SETS)][:12].reshape(-1, *c.x.shape[-2:]))
    res = {
        "thresholds": {"rotation": th.rotation, "mirrored": th.mirrored},
        "rules": rules,
        "val": evaluate(pva, th),
        "tables": tables,
        "confusion_test": confusion(pooled),
        "labels": LABELS,
        "parity": parity(graph, folder / "model.onnx", sample),
        "counts": {
            s: {ds: int(c.where(s, (ds,)).sum()) for ds in (*TRAIN_SETS, *EVAL_ONLY)}
            for s in ("train", "val", "test", "eval")
        },
        **info,
    }
    save_json("orientation", res)
    write_orientation(folder, res)
    return res
