"""``make train-chest-search``: choose the robust recipe by leave-one-source-out validation.

Each trainable variant is trained three times: on NIH ``train`` (scored on Kermany ``val``),
on Kermany ``train`` (scored on NIH ``val``) and on both (scored on the pooled ``val``, mean
within-source AUC). An ensemble variant averages its members' probabilities per fold. The
choice uses ``val`` only, never ``test``, tbx11k or hannover-covid19. The table is written to
``tb_service/models/chest-abnormality/search.{md,json}`` (committed). Per-fold predictions stay
in ``var/results``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tb_service.train import metrics as M  # noqa: N812
from tb_service.train.cache import CHEST_SETS, KER, NIH
from tb_service.train.crops import CropCache
from tb_service.train.results import ABN_NAME, MODELS, RESULTS
from tb_service.train.variants import VARIANTS, Variant

log = logging.getLogger("irmi.train")

FOLDS: dict[str, tuple[str, ...]] = {"nih": (NIH,), "kermany": (KER,), "pooled": CHEST_SETS}
OTHER = {"nih": KER, "kermany": NIH}
SEARCH_MD = MODELS / ABN_NAME / "search.md"
SEARCH_JSON = MODELS / ABN_NAME / "search.json"


def runs_dir(c: CropCache) -> Path:
    """Where the runs on these crops are kept: one folder per crop content, so runs on other
    crops (another lung crop) never mix with them."""
    from tb_service.train.crops import content_key

    return RESULTS / f"crops_{content_key(c)}"


def runs_path(c: CropCache) -> Path:
    return runs_dir(c) / "search_runs.json"


def preds_path(c: CropCache, variant: str, fold: str) -> Path:
    return runs_dir(c) / f"search_{variant}_{fold}.npz"


def fold_indices(c: CropCache, fold: str) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    sets = FOLDS[fold]
    return np.flatnonzero(c.where("train", sets)), np.flatnonzero(c.where("val", sets))


def _fold_preds(c: CropCache, variant: Variant, fold: str) -> NDArray[np.float64] | None:
    """P(abnormal) on every cache row of ``variant`` trained on ``fold`` (ensembles: mean)."""
    if variant.members:
        parts = [_fold_preds(c, VARIANTS[m], fold) for m in variant.members]
        if any(p is None for p in parts):
            return None
        mean: NDArray[np.float64] = np.mean(np.stack([p for p in parts if p is not None]), axis=0)
        return mean
    # An adversary has nothing to do with one source: its single-source run IS variant A's.
    name = "A" if variant.adversary > 0 and len(FOLDS[fold]) == 1 else variant.name
    path = preds_path(c, name, fold)
    if not path.exists():
        return None
    with np.load(path) as z:
        return np.asarray(z["p"], np.float64)


def _specificity_at(
    y_src: NDArray[Any], p_src: NDArray[Any], y: NDArray[Any], p: NDArray[Any]
) -> dict[str, Any]:
    """Threshold for sensitivity >= 0.90 on the training source's val, read on the other."""
    t = M.threshold_for_sensitivity(y_src, p_src, 0.90)
    return {
        "threshold": t,
        "sensitivity": M.proportion_ci(p[y == 1] >= t),
        "specificity": M.proportion_ci(p[y == 0] < t),
    }


def score_variant(c: CropCache, variant: Variant) -> dict[str, Any]:
    """The variant's val figures: LOSO AUCs, pooled within-source AUC, the selection score."""
    from tb_service.train.fit_robust import within_source_auc

    y = c.abnormal.astype(int)
    row: dict[str, Any] = {"description": variant.description}
    for fold in ("nih", "kermany"):
        p = _fold_preds(c, variant, fold)
        if p is None:
            continue
        own, other = c.where("val", FOLDS[fold]), c.where("val", [OTHER[fold]])
        row[f"loso_{fold}"] = {
            "val_auc_same": M.auc_ci(y[own], p[own]),
            "val_auc_other": M.auc_ci(y[other], p[other]),
            "other": OTHER[fold],
            **_specificity_at(y[own], p[own], y[other], p[other]),
        }
    p = _fold_preds(c, variant, "pooled")
    if p is not None:
        val = c.where("val", CHEST_SETS)
        row["pooled"] = {
            "val_auc": M.auc_ci(y[val], p[val]),
            "val_auc_within_source_mean": within_source_auc(y[val], p[val], c.dataset[val]),
            **{
                f"val_auc_{ds}": M.auc_ci(y[c.where("val", [ds])], p[c.where("val", [ds])])
                for ds in CHEST_SETS
            },
        }
    parts = [row[k]["val_auc_other"]["value"] for k in ("loso_nih", "loso_kermany") if k in row]
    if "pooled" in row:
        parts.append(row["pooled"]["val_auc_within_source_mean"])
    row["score"] = float(np.mean(parts)) if len(parts) == 3 else None
    return row


def weights_path(c: CropCache, variant: str, fold: str) -> Path:
    return runs_dir(c) / f"search_{variant}_{fold}.weights.h5"


def train_fold(c: CropCache, variant: Variant, fold: str, epochs: int) -> dict[str, Any]:
    """Train one (variant, fold); save its weights, and its P(abnormal) and embedding on every
    row of the cache; return its run facts."""
    from tb_service.preprocess import chest_pipeline
    from tb_service.train.crops import content_key, split_pipeline, tail_inputs
    from tb_service.train.fit import predict_chest
    from tb_service.train.fit_robust import train_robust

    _head, tail = split_pipeline(chest_pipeline())
    train_idx, val_idx = fold_indices(c, fold)
    fit = train_robust(
        c, train_idx, val_idx, tail, variant, epochs=epochs, tag=f"search-{variant.name}-{fold}"
    )
    out: dict[str, list[NDArray[Any]]] = {"p": [], "emb": []}
    for i in range(0, len(c), 512):
        res = predict_chest(fit.model, tail_inputs(c, range(i, min(len(c), i + 512)), tail))
        out["p"].append(res["abn"][:, 1])
        out["emb"].append(res["features"].mean(axis=(1, 2)))
    runs_dir(c).mkdir(parents=True, exist_ok=True)
    np.savez(
        preds_path(c, variant.name, fold),
        p=np.concatenate(out["p"]),
        emb=np.concatenate(out["emb"]).astype(np.float32),
        key=np.array(content_key(c)),
    )
    fit.model.save_weights(weights_path(c, variant.name, fold))
    return {
        "best_epoch": fit.best_epoch,
        "train_seconds": round(fit.seconds, 1),
        "params": fit.config["params"],
        "history": fit.history,
        "config": fit.config,
        "crop_key": content_key(c),
    }


def choose(table: dict[str, Any]) -> str | None:
    scored = {k: v["score"] for k, v in table.items() if v.get("score") is not None}
    return max(scored, key=lambda k: scored[k]) if scored else None


def write_table(table: dict[str, Any], runs: dict[str, Any], epochs: int, crop: str) -> None:
    chosen = choose(table)
    SEARCH_JSON.parent.mkdir(parents=True, exist_ok=True)
    SEARCH_JSON.write_text(
        json.dumps(
            {
                "chosen": chosen,
                "epochs": epochs,
                "crop": crop,
                "variants": table,
                "runs": {
                    k: {kk: vv for kk, vv in v.items() if kk != "history"} for k, v in runs.items()
                },
                "rule": "highest mean of: AUC on the other source's val (trained on NIH), the same "
                "trained on Kermany, and the pooled model's mean within-source val AUC",
            },
            indent=2,
        )
    )
    SEARCH_MD.write_text(search_markdown(table, runs, chosen, epochs, crop))


def _f(m: dict[str, Any] | None) -> str:
    from tb_service.train.reports import fmt

    return fmt(m)


def search_markdown(
    table: dict[str, Any], runs: dict[str, Any], chosen: str | None, epochs: int, crop: str
) -> str:
    lines = [
        "# chest-abnormality: robust-recipe search (leave-one-source-out, val only)",
        "",
        f"`make train-chest-search`; crop `{crop}`, {epochs} epochs per run, 128 px input, "
        "seed 42. Trained on "
        "one source's `train`, scored on the other source's `val`; pooled = trained on both, "
        "scored on the pooled `val` (mean of the within-source AUCs, so a source shortcut earns "
        "nothing). Specificity: at the threshold giving sensitivity >= 0.90 on the training "
        "source's own val, read on the other source's val normals. Never chosen on test, tbx11k "
        "or hannover-covid19. 95% bootstrap CIs.",
        "",
        "| variant | NIH -> Kermany val AUC | spec / sens there | Kermany -> NIH val AUC | "
        "spec / sens there | pooled val AUC (within-source mean) | score |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        cells = [f"**{name}**" if name == chosen else name]
        for fold in ("nih", "kermany"):
            r = row.get(f"loso_{fold}")
            cells += (
                [_f(r["val_auc_other"]), f"{_f(r['specificity'])} / {_f(r['sensitivity'])}"]
                if r
                else ["not run", "-"]
            )
        pooled = row.get("pooled")
        cells.append(
            f"{_f(pooled['val_auc'])} ({pooled['val_auc_within_source_mean']:.3f})"
            if pooled
            else "not run"
        )
        cells.append(f"{row['score']:.3f}" if row.get("score") is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Variants:", ""]
    lines += [f"- {k}: {v['description']}" for k, v in table.items()]
    lines += [
        "",
        "B's single-source runs are A's: with one source in training the adversary has nothing "
        "to separate, so B differs from A only in the pooled run.",
        "",
        f"Chosen: **{chosen}** (highest score = mean of the three val AUCs)."
        if chosen
        else "Chosen: none yet (runs missing).",
        "",
        "| run | best epoch | train s | params |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {k} | {v['best_epoch']} | {v['train_seconds']} | {v['params']} |"
        for k, v in runs.items()
    ]
    return "\n".join(lines) + "\n"


def cmd_search(
    data_dir: Path | None = None, epochs: int = 10, variants: tuple[str, ...] = ("A", "C", "B", "D")
) -> dict[str, Any]:
    """Train what is missing, fold by fold, and rewrite the table after each run."""
    from tb_service.preprocess import chest_pipeline
    from tb_service.train.crops import build_crop_cache, split_pipeline

    c = build_crop_cache(data_dir)
    crop = split_pipeline(chest_pipeline())[0].stage_names()[-1]
    path = runs_path(c)
    runs: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    for name in variants:
        v = VARIANTS[name]
        if v.members:
            continue
        for fold in FOLDS:
            if v.adversary > 0 and len(FOLDS[fold]) == 1:
                continue
            key = f"{name}-{fold}"
            if key in runs and preds_path(c, name, fold).exists():
                continue
            runs[key] = train_fold(c, v, fold, epochs)
            path.write_text(json.dumps(runs))
            table = {n: score_variant(c, VARIANTS[n]) for n in variants}
            write_table(table, runs, epochs, crop)
    table = {n: score_variant(c, VARIANTS[n]) for n in variants}
    write_table(table, runs, epochs, crop)
    return {"chosen": choose(table), "variants": table}
