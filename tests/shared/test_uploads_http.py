"""shared.uploads in real tb_service and bc_service processes over HTTP: an oversized chunked
upload is refused early, uploads stay in memory, the in-flight budget answers 503, a wrong
content type is refused before the body is read."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import uploadchecks as uc
from tests.bc_service.conftest import SERVICE_ENV as BC_ENV
from tests.onnxgen import chest_model_folders
from tests.procs import Service, running

LIMIT = 8 * uc.MiB
BUDGET = 12 * uc.MiB


@dataclass
class Case:
    svc: Service
    tmpdir: Path
    paths: list[tuple[str, str]]  # (route, file field) of the uploads to check
    wrong_type: tuple[int, str]  # each service keeps its documented answer


def _env(module: str, tmp: pytest.TempPathFactory, tmpdir: Path) -> dict[str, str]:
    prefix = "IRMI_TB_" if module == "tb_service" else "IRMI_BC_"
    env = {
        f"{prefix}MAX_UPLOAD_BYTES": str(LIMIT),
        f"{prefix}MAX_UPLOAD_BYTES_IN_FLIGHT": str(BUDGET),
        f"{prefix}USE_GPU": "false",
        f"{prefix}CPU_WORKERS": "1",
        "TMPDIR": str(tmpdir),
    }
    if module == "tb_service":
        models = chest_model_folders(tmp.mktemp("chest-models"))
        env |= {"IRMI_TB_MODELS_DIR": str(models), "IRMI_TB_ONNX_INTRA_OP_THREADS": "1"}
        env["IRMI_TB_PROCESSES"] = "1"  # the in-flight budget is per process
    else:
        env = {**BC_ENV, **env, "IRMI_BC_MAX_QUEUED_EXAMS": "4"}
    return env


@pytest.fixture(scope="module", params=["tb_service", "bc_service"])
def case(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Case]:
    module = str(request.param)
    tmpdir = tmp_path_factory.mktemp(f"{module}-tmpdir")
    with running(module, _env(module, tmp_path_factory, tmpdir), timeout=180) as svc:
        if module == "tb_service":
            # /v1/predict's body limit is max_upload_bytes + 1 MiB of multipart overhead.
            yield Case(svc, tmpdir, [("/v1/predict", "file")], (422, "validation_error"))
        else:
            paths = [("/v1/exams", "files"), ("/v1/predict", "file")]
            yield Case(svc, tmpdir, paths, (400, "bad_request"))


def test_chunked_oversize_upload_refused_early(case: Case) -> None:
    for path, field in case.paths:
        got = uc.oversize_chunked(case.svc, path, field, LIMIT, case.tmpdir)
        assert got == (413, "payload_too_large"), path


def test_large_upload_stays_in_memory(case: Case) -> None:
    path, field = case.paths[0]
    assert uc.large_file_in_memory(case.svc, path, field, case.tmpdir) == (
        415,
        "unsupported_format",
    )


def test_wrong_content_type_refused_before_reading(case: Case) -> None:
    assert uc.wrong_type(case.svc, case.paths[0][0]) == case.wrong_type


def test_in_flight_budget_gives_503(case: Case) -> None:
    path, field = case.paths[0]
    uc.budget_overflow(case.svc, path, field, 7 * uc.MiB, BUDGET, case.tmpdir)
