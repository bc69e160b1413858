"""Tiny ONNX models built at test time (never committed as if they were trained models)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shared.model import file_sha256


def tiny_classifier(path: Path, size: int = 32, classes: int = 2) -> None:
    """x[N,size,size,1] -> GlobalAveragePool -> Gemm -> Softmax -> probs[N,classes]."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", size, size, 1])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes])
    w = numpy_helper.from_array(np.linspace(-1, 1, classes, dtype=np.float32)[None, :], "W")
    b = numpy_helper.from_array(np.zeros(classes, dtype=np.float32), "B")
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "ax"], ["m2"]),
        helper.make_node("Gemm", ["m2", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    ax = numpy_helper.from_array(np.array([1], dtype=np.int64), "ax")
    graph = helper.make_graph(nodes, "tiny", [x], [y], initializer=[w, b, ax])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def tiny_model_folder(root: Path, name: str = "tiny", version: str = "1", size: int = 32) -> Path:
    folder = root / name / version
    tiny_classifier(folder / "model.onnx", size=size)
    card = {
        "name": name,
        "version": version,
        "sha256": file_sha256(folder / "model.onnx"),
        "task": "test fixture: NOT a trained model",
        "inputs": [{"name": "image", "shape": ["N", size, size, 1]}],
        "outputs": [{"name": "probs", "shape": ["N", 2]}],
        "labels": ["a", "b"],
        "intended_use": "tests only",
    }
    (folder / "card.json").write_text(json.dumps(card))
    return folder
