"""The orientation training path on a tiny synthetic problem (needs the `train` extra): train,
choose thresholds on val, evaluate, export, write the folder, and load it as the service does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from tb_service.orientation import N_TRANSFORMS, apply_transform
from tb_service.train.orientation_data import OrientationCache
from tests.tb_service.svc_helpers import chest_like


def _cache(n: int = 24) -> OrientationCache:
    films = []
    for i in range(n):
        film = chest_like(64, 64, seed=i)
        film[20:40, 34:50] = 230  # a bright "heart" on one side: the mirror is visible
        films.append(np.stack([apply_transform(film, t) for t in range(N_TRANSFORMS)]))
    split = np.array((["train"] * 4 + ["val", "test"]) * (n // 6))
    source = np.array(["nih-cxr14", "kermany-pediatric"] * (n // 2))
    return OrientationCache(
        x=np.stack(films).astype(np.uint8),
        split=split,
        dataset=source,
        name=np.array([f"f{i}" for i in range(n)]),
    )


def test_orientation_trains_exports_and_loads(tmp_path: Path) -> None:
    from shared.model import OnnxModel
    from tb_service.orientation import LABELS, Orienter
    from tb_service.train.export import gate_graph, parity, to_onnx
    from tb_service.train.fit import limit_threads
    from tb_service.train.orientation import (
        choose_thresholds,
        confusion,
        evaluate,
        predict_all,
        train,
    )
    from tb_service.train.orientation_report import orientation_report, write_orientation

    limit_threads(1)
    c = _cache()
    model, info = train(c, epochs=1, per_film=2)
    assert info["best_epoch"] == 1 and len(info["history"]["val_acc"]) == 1
    pva = predict_all(model, c.x[c.where("val")])
    assert pva.shape == (4, 8, 8) and np.allclose(pva.sum(-1), 1.0, atol=1e-5)
    th, rules = choose_thresholds(pva)
    assert (
        0.5 <= th.rotation <= 0.99
        and 0.5 <= th.mirrored < 1.0
        and set(rules)
        == {
            "rotation",
            "mirrored",
        }
    )
    table = evaluate(pva, th)
    assert table["films"] == 4 and set(table["rotation"]) == {"0", "90", "180", "270"}
    cm = confusion(pva)
    assert sum(map(sum, cm)) == 4 * 8
    folder = tmp_path / "chest-orientation" / "1"
    graph = gate_graph(model, 64)
    to_onnx(graph, folder / "model.onnx")
    sample = c.x[:2].reshape(-1, 64, 64)[..., None].astype(np.float32) / 255.0
    res = {
        "thresholds": {"rotation": th.rotation, "mirrored": th.mirrored},
        "rules": rules,
        "val": table,
        "tables": {"pooled test": table},
        "confusion_test": cm,
        "labels": LABELS,
        "parity": parity(graph, folder / "model.onnx", sample),
        "counts": {"train": {"nih-cxr14": 8}},
        **info,
    }
    assert res["parity"]["ok"]
    write_orientation(folder, res)
    assert "| pooled test | 4 |" in orientation_report(res)
    onnx = OnnxModel(folder, use_gpu=False)
    onnx.load()
    orienter = Orienter(onnx)
    assert orienter.thresholds == th
    decision = orienter.assess(sample[0])
    assert decision.k in range(4)
