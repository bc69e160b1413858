from __future__ import annotations

import numpy as np

from shared.transforms import Compose, Transform, batched


class AddConst(Transform):
    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, data: np.ndarray) -> np.ndarray:
        return data + self.value


class Scale(Transform):
    name = "scale_it"

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, data: np.ndarray) -> np.ndarray:
        return data * self.factor


def test_compose_runs_in_order_and_times_each_stage() -> None:
    seen: list[str] = []
    pipe: Compose[np.ndarray] = Compose(
        [AddConst(1.0), Scale(3.0)], on_stage=lambda name, ms: seen.append(name)
    )
    out, timings = pipe.run(np.zeros(3))
    assert np.allclose(out, 3.0)
    assert list(timings.ms) == ["add_const", "scale_it"] == seen
    assert all(v >= 0 for v in timings.ms.values())
    assert np.allclose(pipe(np.ones(2)), 6.0)


def test_describe_lists_parameters() -> None:
    pipe: Compose[np.ndarray] = Compose([AddConst(2.5)])
    assert pipe.describe() == [{"stage": "add_const", "params": {"value": 2.5}}]
    assert "AddConst(value=2.5)" in repr(pipe)


def test_plain_functions_are_stages_too() -> None:
    def clip01(x: np.ndarray) -> np.ndarray:
        return np.clip(x, 0, 1)

    out, timings = Compose([clip01]).run(np.array([-1.0, 2.0]))
    assert list(timings.ms) == ["clip01"] and out.tolist() == [0.0, 1.0]


def test_batched() -> None:
    assert list(batched(range(5), 2)) == [[0, 1], [2, 3], [4]]
