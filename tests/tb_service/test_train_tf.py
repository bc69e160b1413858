"""Training + ONNX export contract on a tiny random problem (needs the `train` extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
ort = pytest.importorskip("onnxruntime")


def test_tiny_chest_net_trains_and_exports(tmp_path: Path) -> None:
    from tb_service.train.export import chest_graph, gate_graph, parity, to_onnx
    from tb_service.train.fit import limit_threads, train_chest, train_gate

    limit_threads(1)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (16, 32, 32, 1)).astype(np.float32)
    y = np.array([0, 1] * 8, np.int8)
    sub = np.array([-1, 0, -1, 1] * 4, np.int8)
    fit = train_chest(x, y, sub, x[:8], y[:8], size=32, epochs=1, batch=8)
    assert len(fit.history["loss"]) == 1 and fit.best_epoch == 1
    fn = chest_graph(fit.model, 32, temperature=1.5)
    path = tmp_path / "m.onnx"
    to_onnx(fn, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]
    names = ["probs", "cam", "subtype"]
    out = dict(zip(names, sess.run(names, {"image": x}), strict=True))
    assert out["probs"].shape == (16, 2) and out["subtype"].shape == (16, 2)
    assert out["cam"].shape == (16, 2, 2) and float(out["cam"].min()) >= 0
    assert parity(fn, path, x)["ok"]

    gfit = train_gate(x, y, x[:8], y[:8], size=32, epochs=1, batch=8)
    gfn = gate_graph(gfit.model, 32)
    to_onnx(gfn, tmp_path / "g.onnx")
    assert parity(gfn, tmp_path / "g.onnx", x)["ok"]
