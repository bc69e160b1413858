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
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, JsonValue
from pydantic_core import core_schema

from shared.contracts.common import ModelRef
from shared.contracts.screening import OperatingPoint, Rate
from shared.transforms import Compose

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


class ModelCardError(ValueError):
    """A card lacks what the service needs of it (a threshold it decides with, ...)."""


class PreprocessingMismatch(RuntimeError):
    """The model card's preprocessing differs from the pipeline this code builds: the model
    would see inputs unlike those it was trained on (train/serve skew). Refuse to serve."""


class _Readable(BaseModel):
    """Fields readable by key too (``card.metrics["test"]``), as the card's JSON reads."""

    def __getitem__(self, key: str) -> Any:
        if key in type(self).model_fields:
            return getattr(self, key)
        extra = self.model_extra or {}
        if key in extra:
            return extra[key]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (
            key in type(self).model_fields or key in (self.model_extra or {})
        )

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


class TensorSpec(BaseModel):
    name: str
    shape: list[int | str | None]
    dtype: str = "float32"
    description: str = ""


class Estimate(_Readable):
    """A measured figure with its 95% confidence interval (and the count it rests on)."""

    model_config = ConfigDict(extra="allow")

    value: float
    ci95: tuple[float, float]
    n: int | None = None


class Metrics(_Readable):
    """Evaluation figures. ``test`` holds the headline figures of the ``split`` they were
    measured on, each with its 95% CI (or confusion counts); further evaluations are kept as
    reported (``val``, per-source tables, baselines, ...)."""

    model_config = ConfigDict(extra="allow")

    split: str = "test"
    ci: str = ""  # how the intervals were computed
    test: dict[str, Estimate | dict[str, float]] = Field(default_factory=dict)


class PreprocessingStep(_Readable):
    """One step as ``shared.transforms.Compose.describe()`` records it."""

    stage: str
    params: dict[str, JsonValue] = Field(default_factory=dict)


class Preprocessing(_Readable):
    """What the model's inputs went through. ``steps`` is written from the code objects'
    ``describe()`` by training (never typed by hand) and compared at start-up with the
    pipeline the service builds (:func:`check_preprocessing`)."""

    model_config = ConfigDict(extra="allow")

    steps: list[PreprocessingStep]
    pipeline: str = ""  # the code that builds it, "module.function"


class TrainingData(_Readable):
    """Where the training, tuning and test images came from; ``sources`` cites each set."""

    model_config = ConfigDict(extra="allow")

    sources: dict[str, str] = Field(default_factory=dict)


class Thresholds(dict[str, float | str]):
    """Operating thresholds by name (a probability in [0, 1] each) and how they were chosen:
    the text entries ``rule`` and, when several thresholds make one label, ``label_rule``.
    A dict, so that the card's JSON reads as written: ``{"abnormal": 0.31, "rule": "..."}``."""

    TEXT_KEYS: ClassVar[frozenset[str]] = frozenset({"rule", "label_rule"})

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls._validate, handler(dict[str, float | str])
        )

    @classmethod
    def _validate(cls, value: dict[str, float | str]) -> Thresholds:
        for key, v in value.items():
            if key in cls.TEXT_KEYS:
                if not isinstance(v, str):
                    raise ValueError(f"threshold {key!r} must be text")
            elif isinstance(v, str) or not 0.0 <= v <= 1.0:
                raise ValueError(f"threshold {key!r} must be a probability in [0, 1], not {v!r}")
        return cls(value)


class CardOperatingPoint(BaseModel):
    """The card's ``operating_point`` section: the point the service reads its score at, with
    what it was measured to do. In ``card.json``::

        "operating_point": {
          "score_threshold": 30.8589,
          "sensitivity": {"value": 0.9279, "ci95": [0.8994, 0.9543], "n": 333},
          "specificity": {"value": 0.8352, "ci95": [0.7823, 0.8889], "n": 182},
          "measured_on": "in-distribution test split: ..."
        }

    ``score_threshold`` is on the 0-100 score scale (100 x the 0-1 threshold on the
    probability; a score at or above it is flagged). ``n`` is the films each rate rests on:
    the positives (tp + fn) for sensitivity, the negatives (tn + fp) for specificity.
    ``measured_on`` says exactly which films (split, sources) the rates come from.
    :func:`shared.train.card_writer.operating_point_section` writes it from a threshold and
    a screen's summary; :meth:`ModelCard.card_point` turns it into the wire contract.
    """

    score_threshold: float = Field(ge=0, le=100)
    sensitivity: Rate
    specificity: Rate
    measured_on: str = Field(min_length=1)


class ModelCard(BaseModel):
    """What ``card.json`` holds. Unknown keys are kept (reports add their own sections).

    A screening model's card has an ``operating_point`` section (:class:`CardOperatingPoint`).
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str
    version: str
    sha256: str
    task: str = ""
    framework: str = "onnx"
    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    preprocessing: Preprocessing
    training_data: TrainingData = Field(default_factory=TrainingData)
    metrics: Metrics = Field(default_factory=Metrics)
    threshold: Thresholds | None = None
    operating_point: CardOperatingPoint | None = None
    intended_use: str = Field(min_length=1)
    limitations: list[str] = Field(default_factory=list)
    created: str = ""

    def threshold_for(self, name: str) -> float:
        """The operating threshold ``name`` (e.g. ``"abnormal"``); ModelCardError if absent."""
        thresholds: dict[str, float | str] = self.threshold or {}
        value = thresholds.get(name)
        if name in Thresholds.TEXT_KEYS or not isinstance(value, int | float):
            raise ModelCardError(
                f"{self.name} v{self.version}: the card has no threshold {name!r} "
                f"(it has {sorted(thresholds)})"
            )
        return float(value)

    def ref(self) -> ModelRef:
        """Name, version and sha256, as every prediction reports the models it used."""
        return ModelRef(name=self.name, version=self.version, sha256=self.sha256)

    def card_point(self) -> OperatingPoint:
        """The card's operating point as the contract's :class:`OperatingPoint` (source
        ``card``, this model); ModelCardError when the card has none."""
        section = self.operating_point
        if section is None:
            raise ModelCardError(
                f"{self.name} v{self.version}: the card has no operating_point section "
                "(score_threshold, sensitivity, specificity, measured_on)"
            )
        return OperatingPoint(source="card", model=self.ref(), **section.model_dump())


def check_preprocessing(card: ModelCard, pipeline: Compose[Any]) -> None:
    """Refuse a model whose card records other preprocessing steps (names and parameters)
    than ``pipeline``, the one the service feeds it with."""
    recorded = [step.model_dump(mode="json") for step in card.preprocessing.steps]
    actual = pipeline.describe()
    if recorded != actual:
        raise PreprocessingMismatch(
            f"{card.name} v{card.version}: card preprocessing {recorded} != serving pipeline "
            f"{actual}; retrain/export the model or restore the preprocessing it was trained with"
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_card(folder: Path) -> ModelCard:
    return ModelCard.model_validate(json.loads((folder / "card.json").read_text()))


def session_options(intra_op: int, inter_op: int = 1, *, allow_spinning: bool = False) -> Any:
    """ONNX Runtime session options of every served model. ``allow_spinning=False``: the
    intra-op threads sleep when a run ends instead of busy-waiting for the next one (ONNX
    Runtime's default spins, which costs about as much CPU as a small model's whole run, on
    every run, and takes a core from the other requests in flight)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op
    opts.inter_op_num_threads = inter_op
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spin = "1" if allow_spinning else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return opts


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
        allow_spinning: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.use_gpu = use_gpu
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.allow_spinning = allow_spinning
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
        opts = session_options(
            self.intra_op_threads, self.inter_op_threads, allow_spinning=self.allow_spinning
        )
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
        info: dict[str, Any] = self.card.model_dump(mode="json")
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
        allow_spinning: bool = False,
    ) -> None:
        self.root = Path(root)
        self.required = list(required or [])
        self.pinned = dict(pinned_versions or {})
        self.models: dict[str, OnnxModel] = {}
        self._kw = {
            "use_gpu": use_gpu,
            "intra_op_threads": intra_op_threads,
            "inter_op_threads": inter_op_threads,
            "allow_spinning": allow_spinning,
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
