"""Session-wide fixtures shared across test areas."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stress.system import System, running_system


@pytest.fixture(scope="session")
def irmi_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The whole system (gateway on SQLite + the real tb_service and bc_service) on loopback,
    started once per test session for the stress, corpus and fuzz tests."""
    with running_system(tmp_path_factory.mktemp("irmi-system")) as system:
        yield system
