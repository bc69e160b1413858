"""``make train-chest``: retrain the variant the search chose and publish chest-abnormality/3
(the version ``tb_service.train.results.ROBUST_VERSION`` names).

The chosen variant (``search.json``; ``--variant`` overrides) is trained on each source alone
(the leave-one-source-out matrix of the final model) and on both (the published network);
runs whose saved weights were trained on the same crops are reused. Then: temperature and
threshold on val, the population distance, export with an ``embedding`` output, the figures
(:mod:`tb_service.train.robust_eval`, :mod:`tb_service.train.served_checks`), and the card,
report and plots of version 2.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tb_service.train.cache import CHEST_SETS
from tb_service.train.crops import CropCache, build_crop_cache, content_key
from tb_service.train.results import ROBUST_FOLDER as FOLDER
from tb_service.train.results import ROBUST_PREDS as PREDS
from tb_service.train.results import save_json
from tb_service.train.search import (
    FOLDS,
    SEARCH_JSON,
    preds_path,
    runs_path,
    train_fold,
    weights_path,
)
from tb_service.train.variants import VARIANTS, Variant

log = logging.getLogger("irmi.train")


def chosen_variant(name: str | None = None) -> Variant:
    if name is None and SEARCH_JSON.exists():
        name = json.loads(SEARCH_JSON.read_text()).get("chosen")
    return VARIANTS[name or "A"]


def _chosen_by(asked: str | None, v: Variant) -> str:
    searched = json.loads(SEARCH_JSON.read_text()).get("chosen") if SEARCH_JSON.exists() else None
    if asked is None or asked == searched:
        return "the search (search.json)"
    return f"--variant {v.name} (the search chose {searched})"


def _run_name(member: Variant, fold: str) -> str:
    """An adversary has nothing to do on one source: that run is variant A's."""
    return "A" if member.adversary > 0 and len(FOLDS[fold]) == 1 else member.name


def ensure_run(c: CropCache, member: Variant, fold: str, epochs: int) -> dict[str, Any]:
    """The saved run of ``member`` on ``fold`` if it was trained on these crops, else train."""
    path_runs = runs_path(c)
    runs: dict[str, Any] = json.loads(path_runs.read_text()) if path_runs.exists() else {}
    name = _run_name(member, fold)
    key = f"{name}-{fold}"
    path = preds_path(c, name, fold)
    if key in runs and path.exists() and weights_path(c, name, fold).exists():
        with np.load(path) as z:
            if "key" in z.files and str(z["key"]) == content_key(c):
                log.info("reusing %s (same crops)", key)
                return dict(runs[key])
    runs[key] = train_fold(c, VARIANTS[name], fold, epochs)
    path_runs.write_text(json.dumps(runs))
    return dict(runs[key])


def _load(path: Path) -> dict[str, NDArray[Any]]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _network_outputs(net: Any, c: CropCache, tail: Any) -> dict[str, NDArray[Any]]:
    """Logits, CAM, subtype probabilities and pooled features of one network on every row."""
    from tb_service.train.crops import tail_inputs
    from tb_service.train.evaluate import chest_cam
    from tb_service.train.fit import predict_chest

    parts: dict[str, list[NDArray[Any]]] = {"logits": [], "cam": [], "sub": [], "emb": []}
    for i in range(0, len(c), 512):
        res = predict_chest(net, tail_inputs(c, range(i, min(len(c), i + 512)), tail))
        parts["logits"].append(res["abn_logits"].astype(np.float64))
        parts["cam"].append(chest_cam(res["features"], net))
        parts["sub"].append(res["sub"])
        parts["emb"].append(res["features"].mean(axis=(1, 2)))
    return {k: np.concatenate(v) for k, v in parts.items()}


def cmd_robust(
    data_dir: Path | None = None, epochs: int = 10, variant: str | None = None
) -> dict[str, Any]:
    from tb_service.preprocess import INPUT_SIZE, chest_pipeline
    from tb_service.train.crops import split_pipeline, tail_inputs
    from tb_service.train.export import parity, robust_graph, to_onnx
    from tb_service.train.fit import limit_threads
    from tb_service.train.nets import build_chest_net
    from tb_service.train.publish_robust import write_robust
    from tb_service.train.robust_eval import Outputs, evaluate_robust
    from tb_service.train.served_checks import served_checks

    limit_threads()
    c = build_crop_cache(data_dir)
    v = chosen_variant(variant)
    members = [VARIANTS[m] for m in v.members] or [v]
    runs: dict[str, Any] = {}
    for m in members:
        for fold in FOLDS:
            runs[f"{m.name}-{fold}"] = ensure_run(c, m, fold, epochs)
    # LOSO: mean member probability; concatenated member embeddings.
    fold_p: dict[str, NDArray[Any]] = {}
    fold_emb: dict[str, NDArray[Any]] = {}
    for fold in ("nih", "kermany"):
        saved = [_load(preds_path(c, _run_name(m, fold), fold)) for m in members]
        fold_p[fold] = np.mean([s["p"] for s in saved], axis=0)
        fold_emb[fold] = np.concatenate([s["emb"] for s in saved], axis=1)
    models = []
    for m in members:
        net = build_chest_net(INPUT_SIZE, "vgg", "softmax", widths=m.widths)
        net.load_weights(weights_path(c, m.name, "pooled"))
        models.append(net)
    _head, tail = split_pipeline(chest_pipeline())
    each = [_network_outputs(net, c, tail) for net in models]
    out = Outputs(
        logits=[o["logits"] for o in each],
        cam=np.mean([o["cam"] for o in each], axis=0).astype(np.float32),
        subtype=np.mean([o["sub"] for o in each], axis=0).astype(np.float32),
        embedding=np.concatenate([o["emb"] for o in each], axis=1).astype(np.float32),
    )
    res, pop, p = evaluate_robust(c, out, fold_p, fold_emb, data_dir)
    FOLDER.mkdir(parents=True, exist_ok=True)
    graph = robust_graph(models, INPUT_SIZE, res["temperature"], res["logit_bias"])
    to_onnx(graph, FOLDER / "model.onnx")
    test_rows = np.flatnonzero(c.where("test", CHEST_SETS))[:96]
    res["parity"] = parity(graph, FOLDER / "model.onnx", tail_inputs(c, test_rows, tail))
    pop.save(FOLDER / "population.npz")
    res["served"] = served_checks(FOLDER, pop, res["threshold"], data_dir)
    res.update(
        {
            "variant": v.name,
            "chosen_by": _chosen_by(variant, v),
            "variant_description": v.description,
            "members": [m.name for m in members],
            "runs": {
                k: {kk: vv for kk, vv in r.items() if kk != "history"} for k, r in runs.items()
            },
            "history": runs[f"{members[0].name}-pooled"]["history"],
            "population": {
                "limit_raw": pop.limit,
                "quantile": pop.quantile,
                "groups": list(pop.groups),
                "dims": int(pop.means.shape[1]),
            },
            "crop_key": content_key(c),
            "crop_stage": split_pipeline(chest_pipeline())[0].stage_names()[-1],
            "counts": {
                s: {
                    str(ds): int(((c.split == s) & (c.dataset == ds)).sum())
                    for ds in np.unique(c.dataset)
                }
                for s in ("train", "val", "test", "eval")
            },
            "search": json.loads(SEARCH_JSON.read_text()) if SEARCH_JSON.exists() else None,
        }
    )
    save_json("robust", res)
    np.savez(PREDS, p=p, y=c.abnormal, split=c.split, dataset=c.dataset)
    write_robust(FOLDER, res)
    return res
