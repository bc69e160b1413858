"""The ONNX model wrapper: sha256 verification, provider choice, warm-up, repository."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared.model import ModelIntegrityError, ModelRepository, OnnxModel
from tests.onnxgen import tiny_model_folder


def test_load_verify_warm_and_run(tmp_path: Path) -> None:
    folder = tiny_model_folder(tmp_path)
    model = OnnxModel(folder, use_gpu=False)
    assert not model.ready
    model.load()
    assert model.ready and model.provider == "CPUExecutionProvider"
    out = model.run_single_input(np.ones((3, 32, 32, 1), np.float32))
    assert out["probs"].shape == (3, 2)
    assert np.allclose(out["probs"].sum(axis=1), 1.0, atol=1e-6)


def test_sha256_mismatch_refuses_to_load(tmp_path: Path) -> None:
    folder = tiny_model_folder(tmp_path)
    card = json.loads((folder / "card.json").read_text())
    card["sha256"] = "0" * 64
    (folder / "card.json").write_text(json.dumps(card))
    model = OnnxModel(folder)
    with pytest.raises(ModelIntegrityError):
        model.load()
    assert not model.ready


def test_tampered_model_file_refuses_to_load(tmp_path: Path) -> None:
    folder = tiny_model_folder(tmp_path)
    with (folder / "model.onnx").open("ab") as fh:
        fh.write(b"\x00")
    with pytest.raises(ModelIntegrityError):
        OnnxModel(folder).load()


def test_gpu_requested_without_cuda_falls_back_to_cpu(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = OnnxModel(tiny_model_folder(tmp_path), use_gpu=True)
    model.load()
    expected = (
        "CUDAExecutionProvider"
        if "CUDAExecutionProvider" in ort.get_available_providers()
        else "CPUExecutionProvider"
    )
    assert model.provider == expected


def test_provider_reported_is_what_the_session_got(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CUDA claimed available but unusable (no device): the session drops to CPU, and so
    does the provider we report."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("a real CUDA provider is present")
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    model = OnnxModel(tiny_model_folder(tmp_path), use_gpu=True)
    model.load()
    assert model.provider == "CPUExecutionProvider"


def test_repository_picks_newest_version_and_required(tmp_path: Path) -> None:
    tiny_model_folder(tmp_path, "m", "1")
    tiny_model_folder(tmp_path, "m", "2")
    tiny_model_folder(tmp_path, "m", "10")
    repo = ModelRepository(tmp_path, required=["m"], use_gpu=False)
    repo.load_all()
    assert repo.get("m").version == "10" and repo.ready
    pinned = ModelRepository(tmp_path, pinned_versions={"m": "2"}, use_gpu=False)
    pinned.load_all()
    assert pinned.get("m").version == "2"


def test_repository_missing_required_model(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path, required=["absent"])
    with pytest.raises(FileNotFoundError):
        repo.load_all()
    assert not repo.ready
