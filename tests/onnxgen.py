"""Tiny ONNX models built at test time (never committed as if they were trained models)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    extra = {"outputs": [{"name": "probs", "shape": ["N", 2]}], "labels": ["a", "b"]}
    _card(folder, name, version, size, {**extra, "preprocessing": {"steps": []}})
    return folder


# --------------------------------------------------------------------------- chest fixtures
# Same I/O as tb_service's real models, with rigged, easily predictable behaviour.


def _save(
    nodes: list[Any], name: str, inputs: list[Any], outputs: list[Any], inits: list[Any], path: Path
) -> None:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _f32(name: str, value: Any) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def tiny_chest_gate(path: Path, size: int = 32, sharpness: float = 1000.0) -> None:
    """image[N,S,S,1] -> probs[N,2] = [p_not_chest, p_chest] with
    p_chest = sigmoid(sharpness * var(image) - 1): a uniform image (variance 0) scores
    sigmoid(-1) = 0.27, "not a chest X-ray"; any textured image scores ~1."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", size, size, 1])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Sub", ["image", "m"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("ReduceMean", ["d2"], ["v"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["v", "ax"], ["v2"]),
        helper.make_node("Gemm", ["v2", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    inits = [
        _f32("W", [[-sharpness / 2, sharpness / 2]]),
        _f32("B", [0.5, -0.5]),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "ax"),
    ]
    _save(nodes, "tiny_chest_gate", [x], [y], inits, path)


def tiny_chest_abnormality(path: Path, size: int = 32, cam_side: int = 8) -> None:
    """image[N,S,S,1] -> probs[N,2] = [p_normal, p_abnormal], cam[N,c,c], subtype[N,2].

    p_abnormal = sigmoid(20 * (mean(left half) - mean(right half))): brighter on the left →
    abnormal, brighter on the right → normal (survives any monotone intensity normalisation).
    cam = the image average-pooled to cam_side x cam_side (bright = hot).
    subtype = softmax([mean(top half), mean(bottom half)]) = [p_bacterial, p_viral]."""
    half = size // 2
    k = size // cam_side
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", size, size, 1])
    outs = [
        helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2]),
        helper.make_tensor_value_info("cam", TensorProto.FLOAT, ["N", cam_side, cam_side]),
        helper.make_tensor_value_info("subtype", TensorProto.FLOAT, ["N", 2]),
    ]
    i64 = lambda n, v: numpy_helper.from_array(np.array(v, dtype=np.int64), n)  # noqa: E731
    nodes = [
        helper.make_node("Slice", ["image", "zero", "half", "ax2"], ["left"]),
        helper.make_node("Slice", ["image", "half", "end", "ax2"], ["right"]),
        helper.make_node("ReduceMean", ["left"], ["ml"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("ReduceMean", ["right"], ["mr"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Sub", ["ml", "mr"], ["diff"]),
        helper.make_node("Unsqueeze", ["diff", "ax1"], ["diff2"]),
        helper.make_node("Gemm", ["diff2", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[k, k], strides=[k, k]),
        helper.make_node("Squeeze", ["pooled", "ax1"], ["cam"]),
        helper.make_node("Slice", ["image", "zero", "half", "ax1"], ["top"]),
        helper.make_node("Slice", ["image", "half", "end", "ax1"], ["bottom"]),
        helper.make_node("ReduceMean", ["top"], ["mt"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("ReduceMean", ["bottom"], ["mb"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Concat", ["mt", "mb"], ["tb4"], axis=1),
        helper.make_node("Reshape", ["tb4", "shape2"], ["tb"]),
        helper.make_node("Softmax", ["tb"], ["subtype"], axis=1),
    ]
    inits = [
        _f32("W", [[-10.0, 10.0]]),
        _f32("B", [0.0, 0.0]),
        i64("zero", [0]),
        i64("half", [half]),
        i64("end", [size]),
        i64("ax1", [1]),
        i64("ax2", [2]),
        i64("shape2", [-1, 2]),
    ]
    _save(nodes, "tiny_chest_abnormality", [x], outs, inits, path)


def _card(folder: Path, name: str, version: str, size: int, extra: dict[str, Any]) -> None:
    card = {
        "name": name,
        "version": version,
        "sha256": file_sha256(folder / "model.onnx"),
        "task": "test fixture: NOT a trained model",
        "inputs": [{"name": "image", "shape": ["N", size, size, 1]}],
        "intended_use": "tests only",
        **extra,
    }
    (folder / "card.json").write_text(json.dumps(card))


def chest_model_folders(
    root: Path,
    size: int = 128,
    gate_size: int = 64,
    gate_threshold: float = 0.5,
    abnormal_threshold: float = 0.5,
) -> Path:
    """``root/chest-gate/1`` and ``root/chest-abnormality/1`` with the real models' I/O
    (default sides = tb_service.preprocess.GATE_INPUT_SIZE and INPUT_SIZE), the abnormality
    card recording the heuristic lung crop (as chest-abnormality/1), and a copy of the
    committed lung segmentation model (``root/lung-seg``, which the service requires)."""
    import shutil

    from tb_service import preprocess
    from tb_service.settings import MODELS_DIR

    shutil.copytree(MODELS_DIR / "lung-seg", root / "lung-seg", dirs_exist_ok=True)
    gate = ("chest-gate", tiny_chest_gate, preprocess.gate_pipeline, gate_size)
    abn = ("chest-abnormality", tiny_chest_abnormality, preprocess.heuristic_chest_pipeline, size)
    makers = [(*gate, "chest", gate_threshold), (*abn, "abnormal", abnormal_threshold)]
    for name, make, pipeline, side, key, threshold in makers:
        folder = root / name / "1"
        make(folder / "model.onnx", size=side)
        steps = pipeline(side).describe()
        extra = {"threshold": {key: threshold}, "preprocessing": {"steps": steps}}
        _card(folder, name, "1", side, extra)
    return root
