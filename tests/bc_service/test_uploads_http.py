"""bc_service's uploads (shared.uploads) over real HTTP: bounded, early, in memory, budgeted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import uploadchecks as uc
from tests.bc_service.conftest import SERVICE_ENV
from tests.procs import Service, running

LIMIT = 8 * uc.MiB
BUDGET = 12 * uc.MiB


@pytest.fixture(scope="module")
def tmpdir_(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bc-tmpdir")


@pytest.fixture(scope="module")
def svc(tmpdir_: Path) -> Iterator[Service]:
    env = {
        **SERVICE_ENV,
        "IRMI_BC_MAX_QUEUED_EXAMS": "4",
        "IRMI_BC_MAX_UPLOAD_BYTES": str(LIMIT),
        "IRMI_BC_MAX_UPLOAD_BYTES_IN_FLIGHT": str(BUDGET),
        "TMPDIR": str(tmpdir_),
    }
    with running("bc_service", env, timeout=180) as s:
        yield s


@pytest.mark.parametrize(("path", "field"), [("/v1/exams", "files"), ("/v1/predict", "file")])
def test_chunked_oversize_upload_refused_early(
    svc: Service, tmpdir_: Path, path: str, field: str
) -> None:
    assert uc.oversize_chunked(svc, path, field, LIMIT, tmpdir_) == (413, "payload_too_large")


def test_large_upload_stays_in_memory(svc: Service, tmpdir_: Path) -> None:
    assert uc.large_file_in_memory(svc, "/v1/exams", "files", tmpdir_) == (
        415,
        "unsupported_format",
    )


def test_wrong_content_type_refused_before_reading(svc: Service) -> None:
    assert uc.wrong_type(svc, "/v1/exams") == (400, "bad_request")


def test_in_flight_budget_gives_503(svc: Service, tmpdir_: Path) -> None:
    uc.budget_overflow(svc, "/v1/exams", "files", 7 * uc.MiB, BUDGET, tmpdir_)
