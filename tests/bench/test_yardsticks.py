"""The benchmarks' yardsticks run against the committed models (``make bench`` is not in
``make test``, so a model change that breaks a baseline would otherwise show only there): each
minimal user script and in-process path answers once, with every model's output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import inputs
from bench.chest_paths import minimal as chest_minimal
from bench.mammo_paths import in_process as mammo_in_process
from bench.mammo_paths import minimal as mammo_minimal

REPO = Path(__file__).resolve().parents[2]


def test_the_minimal_chest_script_runs_every_chest_model() -> None:
    upload = inputs.chest_inputs(("data-nih-512",))[0]
    out = json.loads(chest_minimal(REPO / "tb_service" / "models")(upload.data))
    assert out and all(isinstance(v, float | int | list) for v in out.values())


@pytest.fixture(scope="module")
def exam() -> list[tuple[str, bytes]]:
    return [(tag, up.data) for tag, up in inputs.mammo_exam(None)]


def test_the_minimal_mammography_script_reads_each_view_alone_and_with_its_partner(
    exam: list[tuple[str, bytes]],
) -> None:
    out = json.loads(mammo_minimal(REPO / "bc_service" / "models")(exam))
    assert sorted(out) == ["L-CC", "L-MLO", "R-CC", "R-MLO"]
    for view in out.values():
        assert view["patches"] > 0 and 0.0 <= view["gate"] <= 1.0
        assert len(view["view"]) == len(view["bilateral"]) == 3  # mammo-view/2's outputs
        assert len(view["density"]) == 3 and abs(sum(view["density"]) - 1.0) < 1e-3


def test_the_in_process_mammography_path_is_the_services_exam(
    exam: list[tuple[str, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bc_service.settings import Settings

    monkeypatch.setenv("IRMI_BC_ONNX_INTRA_OP_THREADS", "1")
    result = json.loads(mammo_in_process(Settings())(exam))
    assert len(result["breasts"]) == 2 and len(result["views"]) == 4
