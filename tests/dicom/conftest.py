"""The DICOM chain (tests/dicom/system.py), started once per module; skipped with the reason
where Orthanc or the real films are missing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dicom import films, orthanc
from tests.dicom.system import DicomSystem


def require_chain() -> None:
    if not orthanc.available():
        pytest.skip("Orthanc and its DICOMweb plugin are not installed (.ci/run installs them)")
    if not films.have_data():
        pytest.skip("the real test films are not in IRMI_DATA_DIR (nih-cxr14, mini-mias)")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DicomSystem]:
    require_chain()
    system = DicomSystem(tmp_path_factory.mktemp("dicom-chain"))
    try:
        yield system
    finally:
        system.stop()
