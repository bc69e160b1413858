"""ONNX Runtime sessions of every served model (issue 15): idle intra-op threads sleep instead
of spinning (ONNX Runtime's default busy-waits after every run), and neither that nor the
number of threads changes a single output value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.model import ModelRepository, OnnxModel
from tb_service.settings import MODELS_DIR
from tests.onnxgen import tiny_model_folder

SPIN = "session.intra_op.allow_spinning"


def _entry(model: OnnxModel, key: str = SPIN) -> str:
    return str(model._session.get_session_options().get_session_config_entry(key))


def test_served_sessions_do_not_spin(tmp_path: Path) -> None:
    tiny_model_folder(tmp_path, "tiny")
    repo = ModelRepository(tmp_path, required=["tiny"], use_gpu=False, intra_op_threads=2)
    repo.load_all()
    model = repo.get("tiny")
    assert _entry(model) == "0"
    assert _entry(model, "session.inter_op.allow_spinning") == "0"
    spinning = OnnxModel(model.folder, use_gpu=False, allow_spinning=True)
    spinning.load()
    assert _entry(spinning) == "1"


def test_service_settings_default_to_no_spinning() -> None:
    from bc_service.settings import Settings as BcSettings
    from tb_service.settings import Settings as TbSettings

    assert TbSettings().onnx_allow_spinning is False
    assert BcSettings().onnx_allow_spinning is False
    assert TbSettings().onnx_intra_op_threads == 1  # several requests in flight instead


@pytest.mark.skipif(not (MODELS_DIR / "chest-abnormality").is_dir(), reason="no chest models")
@pytest.mark.parametrize("name", ["chest-abnormality", "lung-seg", "chest-gate"])
def test_outputs_identical_whatever_the_threads_and_spinning(name: str) -> None:
    folder = ModelRepository(MODELS_DIR).discover()[name]
    outputs = []
    for threads, spin in ((0, True), (1, False), (2, False)):
        m = OnnxModel(folder, use_gpu=False, intra_op_threads=threads, allow_spinning=spin)
        m.load()
        _, shape, _ = m.input_specs()[0]
        x = np.random.default_rng(0).normal(size=[3, *shape[1:]]).astype(np.float32)
        outputs.append(m.run_single_input(x))
    for other in outputs[1:]:
        for key, value in outputs[0].items():
            assert np.array_equal(value, other[key]), (name, key)
