"""tb_service's uploads (shared.uploads) over real HTTP: bounded, early, in memory, budgeted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import uploadchecks as uc
from tests.onnxgen import chest_model_folders
from tests.procs import Service, running

LIMIT = 8 * uc.MiB
BUDGET = 12 * uc.MiB


@pytest.fixture(scope="module")
def tmpdir_(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tb-tmpdir")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, tmpdir_: Path) -> Iterator[Service]:
    env = {
        "IRMI_TB_MODELS_DIR": str(chest_model_folders(tmp_path_factory.mktemp("tb-models"))),
        "IRMI_TB_USE_GPU": "false",
        "IRMI_TB_ONNX_INTRA_OP_THREADS": "1",
        "IRMI_TB_CPU_WORKERS": "1",
        "IRMI_TB_MAX_UPLOAD_BYTES": str(LIMIT),
        "IRMI_TB_MAX_UPLOAD_BYTES_IN_FLIGHT": str(BUDGET),
        "TMPDIR": str(tmpdir_),
    }
    with running("tb_service", env, timeout=90) as s:
        yield s


def test_chunked_oversize_upload_refused_early(svc: Service, tmpdir_: Path) -> None:
    # The body limit of /v1/predict is max_upload_bytes + 1 MiB of multipart overhead.
    assert uc.oversize_chunked(svc, "/v1/predict", "file", LIMIT, tmpdir_) == (
        413,
        "payload_too_large",
    )


def test_large_upload_stays_in_memory(svc: Service, tmpdir_: Path) -> None:
    assert uc.large_file_in_memory(svc, "/v1/predict", "file", tmpdir_) == (
        415,
        "unsupported_format",
    )


def test_wrong_content_type_refused_before_reading(svc: Service) -> None:
    assert uc.wrong_type(svc, "/v1/predict") == (422, "validation_error")


def test_in_flight_budget_gives_503(svc: Service, tmpdir_: Path) -> None:
    uc.budget_overflow(svc, "/v1/predict", "file", 7 * uc.MiB, BUDGET, tmpdir_)
