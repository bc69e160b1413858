"""The README's "Deploying" section covers what the deployment issue asks, and names every
setting of every service (scripts/settings_table.py prints the table)."""

from __future__ import annotations

import importlib.util
import warnings

from tests.deploy import manifests as m


def _deploying() -> str:
    text = (m.REPO / "README.md").read_text()
    assert "\n## Deploying\n" in text
    section = text.split("\n## Deploying\n", 1)[1]
    return section.split("\n## ", 1)[0]


def test_deploying_section_covers_the_steps() -> None:
    section = _deploying()
    for needed in (
        "docker compose up",
        "docker-compose.gpu.yml",
        "kubectl apply -k deploy/k8s/overlays/dev",
        "kubectl apply -k deploy/k8s/overlays/gpu",
        "GPU node pool",
        "PostgreSQL is external",
        "Models ship in the image",
        "Scaling",
    ):
        assert needed in section, needed


def test_every_setting_is_in_the_table() -> None:
    spec = importlib.util.spec_from_file_location(
        "settings_table", m.REPO / "scripts" / "settings_table.py"
    )
    assert spec is not None and spec.loader is not None
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    section = _deploying()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = table.env_names()
    missing = sorted(n for n in names if f"`{n}`" not in section)
    assert missing == [], "regenerate with: PYTHONPATH=. python scripts/settings_table.py"
    # settings the manifests use are documented too
    for name in m.ASSUMED_GATEWAY_SETTINGS:
        assert f"`IRMI_GATEWAY_{name.upper()}`" in section


def test_every_variable_named_is_a_setting() -> None:
    """No stale names: each IRMI_* variable the section mentions is read by some service."""
    import re

    names = set(re.findall(r"\bIRMI_[A-Z0-9_]+[A-Z0-9]\b", _deploying()))
    names = {n for n in names if n.count("_") >= 2 or n in m.GLOBAL_SETTINGS}
    problems, _ = m.setting_problems(names - {"IRMI_PORT"})  # compose's published-port knob
    assert problems == []
