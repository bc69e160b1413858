"""The chest training commands: baselines, gate, abnormality (+ subtype head), experiments,
and the TBX11K diagnostics of the committed model. Each saves its results
(:mod:`tb_service.train.results`); gate and abnormality also export the model and write its
folder (:mod:`tb_service.train.publish`). TensorFlow is imported by the commands that train.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, get_args

import numpy as np

from tb_service.preprocess import GATE_INPUT_SIZE, INPUT_SIZE
from tb_service.train import metrics as M  # noqa: N812
from tb_service.train.cache import (
    CHEST_SETS,
    KER,
    NIH,
    ChestCache,
    build_chest_cache,
    build_gate_cache,
)
from tb_service.train.evaluate import TBX, evaluate_chest, fallback_share, tbx_diagnostics
from tb_service.train.publish import write_abnormality, write_gate
from tb_service.train.results import (
    ABN_NAME,
    ABN_PREDS,
    GATE_NAME,
    GATE_PREDS,
    load_json,
    model_folder,
    save_json,
)

if TYPE_CHECKING:
    from tb_service.train.fit import FitResult
    from tb_service.train.nets import OutputActivation

log = logging.getLogger("irmi.train")

SPLITS = ("train", "val", "test", "eval")


def cmd_baselines(data_dir: Path | None = None) -> dict[str, Any]:
    from tb_service.train.baselines import shortcut_baselines

    res = shortcut_baselines(build_chest_cache(data_dir))
    save_json("baselines", res)
    log.info("baselines: %s", json.dumps(res))
    return res


def cmd_gate(data_dir: Path | None = None, epochs: int = 8) -> dict[str, Any]:
    from tb_service.train.export import gate_graph, parity, to_onnx
    from tb_service.train.fit import limit_threads, predict_gate, train_gate

    limit_threads()
    g = build_gate_cache(data_dir)
    train, val, test = (g.split == s for s in ("train", "val", "test"))
    fit = train_gate(
        g.x[train], g.y[train], g.x[val], g.y[val], size=GATE_INPUT_SIZE, epochs=epochs
    )
    p = predict_gate(fit.model, g.x)[:, 1]
    # Threshold on val: let >= 99% of val chest X-rays through, never above 0.5.
    t = min(0.5, M.threshold_for_sensitivity(g.y[val], p[val], 0.99))
    per_source = {}
    for source in np.unique(g.source):
        m = test & (g.source == source) if source != TBX else g.source == source
        if m.any():
            correct = (p[m] >= t) == (g.y[m] == 1)
            per_source[str(source)] = {
                "n": int(m.sum()),
                "label": "chest" if int(g.y[m][0]) == 1 else "not_chest",
                "correct_share": float(round(float(correct.mean()), 4)),
            }
    folder = model_folder(GATE_NAME)
    onnx_path = folder / "model.onnx"
    graph = gate_graph(fit.model, GATE_INPUT_SIZE)
    to_onnx(graph, onnx_path)
    res = {
        "threshold": t,
        "test": M.bootstrap(g.y[test], p[test], t),
        "test_per_source": per_source,
        "val_auc": M.auc_ci(g.y[val], p[val]),
        "history": fit.history,
        "best_epoch": fit.best_epoch,
        "train_seconds": round(fit.seconds, 1),
        "config": fit.config,
        "parity": parity(graph, onnx_path, g.x[test][:96]),
        "counts": {
            s: {
                str(src): int(((g.split == s) & (g.source == src)).sum())
                for src in np.unique(g.source)
            }
            for s in SPLITS
        },
    }
    save_json("gate", res)
    np.savez(GATE_PREDS, p=p, y=g.y, split=g.split, source=g.source)
    write_gate(folder, res)
    return res


def train_variant(
    c: ChestCache,
    train_sets: list[str],
    *,
    backbone: str,
    activation: OutputActivation = "softmax",
    epochs: int,
    tag: str,
) -> FitResult:
    """The chest network trained on ``train_sets``' train split, epoch chosen on their val."""
    from tb_service.train.fit import train_chest
    from tb_service.train.nets import Backbone

    if backbone not in get_args(Backbone):
        raise ValueError(f"unknown backbone {backbone!r}; known: {get_args(Backbone)}")

    train = c.where("train", train_sets)
    val = c.where("val", train_sets)
    return train_chest(
        c.x[train],
        c.abnormal[train],
        c.subtype[train],
        c.x[val],
        c.abnormal[val],
        size=INPUT_SIZE,
        backbone=cast(Backbone, backbone),
        activation=activation,
        epochs=epochs,
        tag=tag,
    )


def cmd_abnormality(
    data_dir: Path | None = None,
    epochs: int = 12,
    backbones: tuple[str, ...] = ("vgg", "mobilenet"),
) -> dict[str, Any]:
    """Train each backbone, keep the best on val, calibrate, threshold, export."""
    from tb_service.train.export import chest_graph, parity, to_onnx
    from tb_service.train.fit import limit_threads

    limit_threads()
    c = build_chest_cache(data_dir)
    both = list(CHEST_SETS)
    comparison: dict[str, Any] = {}
    best: FitResult | None = None
    chosen = backbones[0]
    for backbone in backbones:
        fit = train_variant(c, both, backbone=backbone, epochs=epochs, tag=f"abn-{backbone}")
        comparison[backbone] = {
            "val_auc_best_epoch": fit.best_val_auc,
            "best_epoch": fit.best_epoch,
            "train_seconds": round(fit.seconds, 1),
            "params": fit.config["params"],
            "history": fit.history,
        }
        save_json("backbones", comparison)
        if best is None or fit.best_val_auc > best.best_val_auc:
            best, chosen = fit, backbone
    assert best is not None, "no backbone given"
    res, preds = evaluate_chest(best, c, data_dir)
    folder = model_folder(ABN_NAME)
    onnx_path = folder / "model.onnx"
    graph = chest_graph(best.model, INPUT_SIZE, res["temperature"])
    to_onnx(graph, onnx_path)
    res["parity"] = parity(graph, onnx_path, c.x[c.where("test", both)][:96])
    res.update(
        {
            "backbone": chosen,
            "backbone_comparison": {
                k: {kk: vv for kk, vv in v.items() if kk != "history"}
                for k, v in comparison.items()
            },
            "history": best.history,
            "best_epoch": best.best_epoch,
            "train_seconds": round(sum(v["train_seconds"] for v in comparison.values()), 1),
            "config": best.config,
            "counts": {s: {ds: int(c.where(s, [ds]).sum()) for ds in (*both, TBX)} for s in SPLITS},
            "lung_crop_fallback_share": {
                ds: fallback_share(c, c.dataset == ds) for ds in (*both, TBX)
            },
        }
    )
    save_json("abnormality", res)
    # Any: np.savez's keyword arguments also hold its bool option
    arrays: dict[str, Any] = {
        "y": c.abnormal,
        "split": c.split,
        "dataset": c.dataset,
        "subtype": c.subtype,
        **preds,
    }
    np.savez(ABN_PREDS, **arrays)
    write_abnormality(folder, res)
    return res


def cmd_experiments(
    data_dir: Path | None = None, epochs: int = 8, backbone: str | None = None
) -> dict[str, Any]:
    """Cross-dataset generalisation and the output-activation table (shorter runs)."""
    from tb_service.train.fit import limit_threads, predict_chest

    limit_threads()
    c = build_chest_cache(data_dir)
    main = load_json("abnormality") or {}
    chosen: str = backbone or main.get("backbone", "vgg")
    y = c.abnormal.astype(int)
    res: dict[str, Any] = load_json("experiments") or {}
    res.update({"backbone": chosen, "epochs": epochs})
    cross = res.setdefault("cross_dataset", {})
    for train_set, other in ((NIH, KER), (KER, NIH)):
        fit = train_variant(
            c, [train_set], backbone=chosen, epochs=epochs, tag=f"cross-{train_set}"
        )
        p = predict_chest(fit.model, c.x)["abn"][:, 1]
        same_test, other_test = c.where("test", [train_set]), c.where("test", [other])
        cross[f"train_{train_set}"] = {
            "test_same": M.auc_ci(y[same_test], p[same_test]),
            "test_other": M.auc_ci(y[other_test], p[other_test]),
            "other": other,
            "train_seconds": round(fit.seconds, 1),
            "best_epoch": fit.best_epoch,
        }
        save_json("experiments", res)
    activations = res.setdefault("activations", {})
    both = list(CHEST_SETS)
    test = c.where("test", both)
    acts: tuple[OutputActivation, ...] = ("softmax", "relu", "softplus")
    for act in acts:
        fit = train_variant(
            c, both, backbone=chosen, activation=act, epochs=epochs, tag=f"act-{act}"
        )
        p = predict_chest(fit.model, c.x)["abn"][:, 1]
        at_half = M.bootstrap(y[test], p[test], 0.5)
        activations[act] = {
            "val_auc": fit.best_val_auc,
            "test_auc": at_half["auc"],
            "test_accuracy_at_0.5": at_half["accuracy"],
            "test_sensitivity_at_0.5": at_half["sensitivity"],
            "test_specificity_at_0.5": at_half["specificity"],
            "final_train_loss": fit.history["loss"][-1],
            "train_seconds": round(fit.seconds, 1),
        }
        save_json("experiments", res)
    return res


def cmd_tbx_diagnostics(data_dir: Path | None = None) -> dict[str, Any]:
    res = tbx_diagnostics(data_dir)
    save_json("tbx_diagnostics", res)
    return res


def cmd_report(data_dir: Path | None = None) -> None:
    """Rewrite the cards, reports and plots from the saved results (no training); the
    TBX11K diagnostics are re-measured first on the committed abnormality model."""
    gate = load_json("gate")
    if gate:
        write_gate(model_folder(GATE_NAME), gate)
    abn = load_json("abnormality")
    if abn and (model_folder(ABN_NAME) / "model.onnx").exists():
        cmd_tbx_diagnostics(data_dir)
    if abn:
        write_abnormality(model_folder(ABN_NAME), abn)
    robust = load_json("robust")
    if robust:
        from tb_service.train.publish_robust import write_robust
        from tb_service.train.results import ROBUST_FOLDER as FOLDER

        write_robust(FOLDER, robust)
