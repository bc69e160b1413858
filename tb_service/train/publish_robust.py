"""Write the robust screen's folder (chest-abnormality/3) from its saved results: plots
(curves and tables, never images from the data), ``card.json`` and ``report.md``.
TensorFlow-free."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shared.train.card_writer import typed_metrics, write_card
from shared.train.plots import plot_confusion, plot_history, plot_reliability, plot_roc
from tb_service.train.cache import CHEST_SETS, KER, NIH
from tb_service.train.results import ROBUST_VERSION
from tb_service.train.robust_card import robust_card, v1_card
from tb_service.train.robust_report import robust_report


def baselines() -> dict[str, Any]:
    """The shortcut baselines on these splits: var/results/baselines.json when measured here,
    else the same figures as chest-abnormality/1's card recorded them (raw-image features,
    the same splits: preprocessing does not change them)."""
    from tb_service.train.results import load_json

    saved = load_json("baselines")
    if saved:
        return dict(saved)
    recorded = v1_card().get("metrics", {}).get("shortcut_baselines_test", {})
    return {k: v for k, v in recorded.items() if "input_histogram" not in k}


def write_robust(folder: Path, res: dict[str, Any]) -> None:
    from tb_service.train.results import ROBUST_PREDS as PREDS

    folder.mkdir(parents=True, exist_ok=True)
    h = res["history"]
    plot_history(
        [
            {"train loss": h["loss"], "val loss": h["val_loss"]},
            {"val AUC (within-source mean)": h["val_auc"]},
        ],
        folder / "curves.png",
        f"chest-abnormality v{ROBUST_VERSION} ({res['variant']}), pooled run",
    )
    counts = res["test"]["counts"]
    plot_confusion(
        [[int(counts["tn"]), int(counts["fp"])], [int(counts["fn"]), int(counts["tp"])]],
        ["normal", "abnormal"],
        folder / "confusion_test.png",
        f"test (NIH + Kermany) @ {res['threshold']:.3f}",
    )
    if PREDS.exists():
        with np.load(PREDS) as z:
            y, p = z["y"], z["p"]

            def rows(split: str, sets: tuple[str, ...]) -> Any:
                return (z["split"] == split) & np.isin(z["dataset"], list(sets))

            plot_roc(
                {
                    name: (y[rows("test", s)], p[rows("test", s)])
                    for name, s in (
                        ("NIH + Kermany", CHEST_SETS),
                        ("NIH", (NIH,)),
                        ("Kermany", (KER,)),
                    )
                },
                folder / "roc_test.png",
                f"chest-abnormality v{ROBUST_VERSION} ROC (test)",
            )
            plot_reliability(
                {
                    "val": (y[rows("val", CHEST_SETS)], p[rows("val", CHEST_SETS)]),
                    "test": (y[rows("test", CHEST_SETS)], p[rows("test", CHEST_SETS)]),
                },
                folder / "reliability.png",
                f"reliability after calibration (T = {res['temperature']:.2f}, "
                f"bias {res.get('logit_bias', 0.0):+.2f})",
                positive="abnormal",
            )
    base = baselines()
    card = robust_card(res, base)
    typed_metrics(card, card["metrics"]["ci"])  # intervals as ci95, the typed card's shape
    write_card(folder, card)
    (folder / "report.md").write_text(robust_report(res, base))
