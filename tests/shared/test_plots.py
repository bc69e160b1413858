"""The report figures are written as PNG files (needs matplotlib, in the ``train`` extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.train import plots

pytest.importorskip("matplotlib")


def test_every_figure_is_a_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    s = np.clip(y * 0.4 + rng.uniform(0, 0.6, 50), 0, 1)
    plots.plot_roc({"a": (y, s), "b": (y, 1 - s)}, tmp_path / "roc.png", "roc")
    plots.plot_confusion([[3, 1], [0, 4]], ["neg", "pos"], tmp_path / "cm.png", "cm")
    plots.plot_history([{"loss": [1.0, 0.5]}, {"auc": [0.6, 0.7]}], tmp_path / "h.png", "h")
    plots.plot_reliability({"val": (y, s)}, tmp_path / "rel.png", "rel", positive="abnormal")
    for name in ("roc", "cm", "h", "rel"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
