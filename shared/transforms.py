"""A small transform/compose mechanism for preprocessing pipelines.

Each step is a callable object whose parameters live in ``__init__`` (MONAI style); a
:class:`Compose` runs them in order and times each stage. Training and serving import the
same pipelines, so there is no train/serve skew.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Transform:
    """Base class for a preprocessing step: override ``__call__``; name defaults to the class."""

    name: str = ""

    def __call__(self, data: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def stage_name(self) -> str:
        return self.name or _snake(type(self).__name__)

    def params(self) -> dict[str, Any]:
        """The step's parameters, for model cards and reports."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


@dataclass
class StageTimings:
    """Milliseconds per stage, in the order the stages ran."""

    ms: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, ms: float) -> None:
        self.ms[stage] = self.ms.get(stage, 0.0) + ms

    def merge(self, other: StageTimings, prefix: str = "") -> None:
        for k, v in other.ms.items():
            self.add(prefix + k, v)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` (added even when it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - start) * 1000.0)


class Compose(Generic[T]):
    """Run transforms in order; :meth:`run` also returns per-stage timings."""

    def __init__(
        self,
        transforms: Sequence[Callable[[Any], Any]],
        on_stage: Callable[[str, float], None] | None = None,
    ) -> None:
        self.transforms = list(transforms)
        self.on_stage = on_stage

    def __call__(self, data: Any) -> T:
        out, _ = self.run(data)
        return out

    def run(self, data: Any) -> tuple[T, StageTimings]:
        timings = StageTimings()
        for step in self.transforms:
            start = time.perf_counter()
            data = step(data)
            elapsed = (time.perf_counter() - start) * 1000.0
            name = stage_name(step)
            timings.add(name, elapsed)
            if self.on_stage is not None:
                self.on_stage(name, elapsed)
        return data, timings

    def stage_names(self) -> list[str]:
        return [stage_name(t) for t in self.transforms]

    def describe(self) -> list[dict[str, Any]]:
        """Names and parameters of every step (written into model cards)."""
        out = []
        for t in self.transforms:
            params = t.params() if isinstance(t, Transform) else {}
            out.append({"stage": stage_name(t), "params": _jsonable(params)})
        return out

    def __iter__(self) -> Iterator[Callable[[Any], Any]]:
        return iter(self.transforms)

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def stage_name(step: Callable[[Any], Any]) -> str:
    if isinstance(step, Transform):
        return step.stage_name
    return _snake(getattr(step, "__name__", type(step).__name__))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
