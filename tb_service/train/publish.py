"""Write a chest model's folder from its saved training results: the plots (curves and
tables, never images from the data), ``card.json`` and ``report.md``. TensorFlow-free."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shared.train.card_writer import write_card
from shared.train.plots import plot_confusion, plot_history, plot_reliability, plot_roc
from tb_service.train.cache import CHEST_SETS, KER, NIH
from tb_service.train.cards import abnormality_card, gate_card
from tb_service.train.reports import abnormality_report, gate_report
from tb_service.train.results import ABN_PREDS, GATE_PREDS, load_json


def _confusion(counts: dict[str, int]) -> list[list[int]]:
    """Binary counts as the matrix rows = true (negative, positive), columns = predicted."""
    return [[int(counts["tn"]), int(counts["fp"])], [int(counts["fn"]), int(counts["tp"])]]


def _training_curves(history: dict[str, list[float]], path: Path, title: str) -> None:
    plot_history(
        [
            {"train loss": history["loss"], "val loss": history["val_loss"]},
            {
                "train acc": history["acc"],
                "val acc @0.5": history["val_acc"],
                "val AUC": history["val_auc"],
            },
        ],
        path,
        title,
    )


def write_gate(folder: Path, res: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _training_curves(res["history"], folder / "curves.png", "chest-gate training")
    plot_confusion(
        _confusion(res["test"]["counts"]),
        ["not chest", "chest"],
        folder / "confusion_test.png",
        f"gate test @ {res['threshold']:.3f}",
    )
    if GATE_PREDS.exists():
        with np.load(GATE_PREDS) as z:
            test = z["split"] == "test"
            plot_roc(
                {"test": (z["y"][test], z["p"][test])},
                folder / "roc_test.png",
                "chest-gate ROC (test)",
            )
    write_card(folder, gate_card(res))
    (folder / "report.md").write_text(gate_report(res))


def write_abnormality(folder: Path, res: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    base = load_json("baselines") or {}
    exp = load_json("experiments") or {}
    diag = load_json("tbx_diagnostics")
    _training_curves(
        res["history"], folder / "curves.png", f"chest-abnormality ({res['backbone']})"
    )
    plot_confusion(
        _confusion(res["test"]["counts"]),
        ["normal", "abnormal"],
        folder / "confusion_test.png",
        f"test (NIH + Kermany) @ {res['threshold']:.3f}",
    )
    plot_confusion(
        _confusion(res["subtype_test"]["counts"]),
        ["bacterial", "viral"],
        folder / "confusion_subtype_test.png",
        "subtype, Kermany test pneumonia @0.5",
    )
    if ABN_PREDS.exists():
        with np.load(ABN_PREDS) as z:
            y, p, p_raw = z["y"], z["p"], z["p_raw"]

            def rows(split: str, datasets: tuple[str, ...]) -> Any:
                return (z["split"] == split) & np.isin(z["dataset"], list(datasets))

            plot_roc(
                {
                    name: (y[rows("test", sets)], p[rows("test", sets)])
                    for name, sets in (
                        ("NIH + Kermany", CHEST_SETS),
                        ("NIH", (NIH,)),
                        ("Kermany", (KER,)),
                    )
                },
                folder / "roc_test.png",
                "chest-abnormality ROC (test)",
            )
            test, val = rows("test", CHEST_SETS), rows("val", CHEST_SETS)
            plot_reliability(
                {
                    "val before T": (y[val], p_raw[val]),
                    "val after T": (y[val], p[val]),
                    "test before T": (y[test], p_raw[test]),
                    "test after T": (y[test], p[test]),
                },
                folder / "reliability.png",
                f"reliability, temperature T = {res['temperature']:.3f}",
                positive="abnormal",
            )
    write_card(folder, abnormality_card(res, base, exp, diag))
    (folder / "report.md").write_text(abnormality_report(res, base, exp, diag))
