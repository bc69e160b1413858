"""ONNX Runtime model wrapper and model repository.

A model version lives in a folder ``<repo>/<name>/<version>/`` holding ``model.onnx`` and
``card.json``. Loading verifies the file's sha256 against the card and refuses a mismatch,
picks CUDAExecutionProvider only when a session really gets it, warms up, and only then
reports ``ready``. One InferenceSession per model per process; ONNX Runtime sessions may be
run from several threads at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger("irmi.model")

_ORT_TYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


class ModelIntegrityError(RuntimeError):
    """The ONNX file does not match the sha256 recorded in its card: refuse to serve it."""


class TensorSpec(BaseModel):
    name: str
    shape: list[int | str | None]
    dtype: str = "float32"
    description: str = ""


class ModelCard(BaseModel):
    """What ``card.json`` holds. Unknown keys are kept (reports add their own sections)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str
    version: str
    sha256: str
    task: str = ""
    framework: str = "onnx"
    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    training_data: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    threshold: dict[str, Any] | float | None = None
    intended_use: str = ""
    limitations: list[str] = Field(default_factory=list)
    created: str = ""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_card(folder: Path) -> ModelCard:
    return ModelCard.model_validate(json.loads((folder / "card.json").read_text()))


class OnnxModel:
    """One ONNX model version: ``load()`` (verify, create session, warm up) then ``run()``."""

    def __init__(
        self,
        folder: Path,
        *,
        use_gpu: bool = True,
        intra_op_threads: int = 0,
        inter_op_threads: int = 1,
        warmup_runs: int = 2,
    ) -> None:
        self.folder = Path(folder)
        self.use_gpu = use_gpu
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.warmup_runs = warmup_runs
        self.card = read_card(self.folder)
        self.provider: str | None = None
        self.load_ms: float | None = None
        self._session: Any = None
        self._ready = False

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def ready(self) -> bool:
        return self._ready

    def verify(self) -> None:
        actual = file_sha256(self.folder / "model.onnx")
        if actual != self.card.sha256:
            raise ModelIntegrityError(
                f"{self.folder}: model.onnx sha256 {actual} does not match card {self.card.sha256}"
            )

    def load(self) -> None:
        import onnxruntime as ort

        start = time.perf_counter()
        self.verify()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_threads
        opts.inter_op_num_threads = self.inter_op_threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if self.use_gpu and "CUDAExecutionProvider" in available:
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        self._session = ort.InferenceSession(
            str(self.folder / "model.onnx"), sess_options=opts, providers=providers
        )
        # A CUDA provider that failed to initialise (no driver, no device) silently drops
        # out of the session's list: report the provider the session really got.
        self.provider = self._session.get_providers()[0]
        self.warmup()
        self.load_ms = (time.perf_counter() - start) * 1000.0
        self._ready = True
        log.info(
            "model loaded",
            extra={
                "model": self.name,
                "version": self.version,
                "provider": self.provider,
                "load_ms": round(self.load_ms, 1),
            },
        )

    def input_specs(self) -> list[tuple[str, list[int], Any]]:
        """(name, concrete shape with dynamic axes set to 1, numpy dtype) per input."""
        specs = []
        for inp in self._session.get_inputs():
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
            specs.append((inp.name, shape, _ORT_TYPES.get(inp.type, np.float32)))
        return specs

    def output_names(self) -> list[str]:
        return [o.name for o in self._session.get_outputs()]

    def warmup(self) -> None:
        feeds = {name: np.zeros(shape, dtype=dt) for name, shape, dt in self.input_specs()}
        for _ in range(max(1, self.warmup_runs)):
            self._session.run(None, feeds)

    def run(self, feeds: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """Blocking inference; call it from a worker thread, never on the event loop."""
        if self._session is None:
            raise RuntimeError(f"model {self.folder} is not loaded")
        names = self.output_names()
        outputs = self._session.run(names, feeds)
        return dict(zip(names, outputs, strict=True))

    def run_single_input(self, x: NDArray[Any]) -> dict[str, NDArray[Any]]:
        name = self._session.get_inputs()[0].name
        return self.run({name: x})

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = self.card.model_dump()
        info["ready"] = self.ready
        info["provider"] = self.provider
        info["load_ms"] = self.load_ms
        return info


class ModelRepository:
    """All model folders under a root, newest version of each name unless pinned."""

    def __init__(
        self,
        root: Path,
        *,
        required: list[str] | None = None,
        pinned_versions: dict[str, str] | None = None,
        use_gpu: bool = True,
        intra_op_threads: int = 0,
        inter_op_threads: int = 1,
    ) -> None:
        self.root = Path(root)
        self.required = list(required or [])
        self.pinned = dict(pinned_versions or {})
        self.models: dict[str, OnnxModel] = {}
        self._kw = {
            "use_gpu": use_gpu,
            "intra_op_threads": intra_op_threads,
            "inter_op_threads": inter_op_threads,
        }
        self.load_error: str | None = None

    def discover(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        if not self.root.is_dir():
            return found
        for name_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            versions = [
                v
                for v in name_dir.iterdir()
                if v.is_dir() and (v / "model.onnx").exists() and (v / "card.json").exists()
            ]
            if not versions:
                continue
            pinned = self.pinned.get(name_dir.name)
            if pinned is not None:
                chosen = [v for v in versions if v.name == pinned]
                if not chosen:
                    raise FileNotFoundError(f"{name_dir.name} version {pinned} not found")
                found[name_dir.name] = chosen[0]
            else:
                found[name_dir.name] = max(versions, key=lambda v: _version_key(v.name))
        return found

    def load_all(self) -> None:
        folders = self.discover()
        missing = [r for r in self.required if r not in folders]
        if missing:
            raise FileNotFoundError(f"required models missing under {self.root}: {missing}")
        for name, folder in folders.items():
            model = OnnxModel(folder, **self._kw)  # type: ignore[arg-type]
            model.load()
            self.models[name] = model

    @property
    def ready(self) -> bool:
        return all(r in self.models and self.models[r].ready for r in self.required) and all(
            m.ready for m in self.models.values()
        )

    def get(self, name: str) -> OnnxModel:
        return self.models[name]

    def __contains__(self, name: object) -> bool:
        return name in self.models


def _version_key(v: str) -> tuple[int, ...] | tuple[float, str]:
    try:
        return tuple(int(p) for p in v.split("."))
    except ValueError:
        return (float("-inf"), v)
