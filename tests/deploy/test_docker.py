"""Dockerfiles (hadolint and invariants) and docker compose (compose-spec schema and
invariants). No Docker engine here: building and running the images is the operator's check
(README "Deploying")."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy import manifests as m


def test_every_dockerfile_is_checked() -> None:
    assert sorted(p.name for p in m.DOCKER.glob("*.Dockerfile")) == sorted(m.DOCKERFILES)


@pytest.mark.parametrize("name", sorted(m.DOCKERFILES))
def test_hadolint(name: str) -> None:
    res = m.hadolint(m.DOCKER / name)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("name", sorted(m.DOCKERFILES))
def test_dockerfile_invariants(name: str) -> None:
    package, extra = m.DOCKERFILES[name]
    assert m.dockerfile_problems((m.DOCKER / name).read_text(), package, extra) == []


def test_gpu_variants_run_on_cuda() -> None:
    for name in ("tb_service.gpu.Dockerfile", "bc_service.gpu.Dockerfile"):
        text = (m.DOCKER / name).read_text()
        assert "ARG CUDA_IMAGE=nvidia/cuda:" in text and "cudnn-runtime" in text
        assert "USE_GPU=true" in text
    for name in ("tb_service.Dockerfile", "bc_service.Dockerfile"):
        assert "USE_GPU=false" in (m.DOCKER / name).read_text()


@pytest.mark.parametrize(
    ("extra", "has", "lacks"),
    [
        ("tb", {"onnxruntime"}, {"onnxruntime-gpu", "sqlalchemy", "tensorflow-cpu"}),
        ("bc", {"onnxruntime"}, {"onnxruntime-gpu", "sqlalchemy", "tensorflow-cpu"}),
        ("gpu", {"onnxruntime-gpu"}, {"onnxruntime", "sqlalchemy", "tensorflow-cpu"}),
        ("gateway", {"sqlalchemy", "asyncpg", "boto3"}, {"onnxruntime", "onnxruntime-gpu"}),
    ],
)
def test_each_image_gets_one_onnxruntime_at_most(
    extra: str, has: set[str], lacks: set[str]
) -> None:
    """What `uv sync --frozen --extra X` puts in an image: never both ONNX Runtime packages
    (they install the same module), no training or dev packages."""
    try:
        names = m.locked_packages(extra)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    assert has <= names
    assert not (lacks & names)
    assert not ({"pytest", "ruff", "mypy"} & names)


def test_build_context_keeps_models_and_drops_the_rest() -> None:
    lines = (m.REPO / ".dockerignore").read_text().splitlines()
    assert next(x for x in lines if not x.startswith("#")) == "**"
    for needed in ("!tb_service/", "!bc_service/", "!shared/", "!gateway/", "!uv.lock"):
        assert needed in lines
    assert not [x for x in lines if "models" in x]


def test_broken_dockerfile_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text(
        "FROM python:latest\n"
        "RUN apt-get update && apt-get install -y curl\n"
        "RUN pip install uv\n"
        'CMD ["python", "-m", "tb_service"]\n'
    )
    res = m.hadolint(bad)
    assert res.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3013"):
        assert rule in res.stdout
    problems = m.dockerfile_problems(bad.read_text(), "tb_service", "tb")
    for text in ("multi-stage", "not pinned", "no USER", "HEALTHCHECK", "extras"):
        assert any(text in p for p in problems), text
    root = (m.DOCKER / "tb_service.Dockerfile").read_text().replace("USER 10001:10001", "USER 0")
    assert any("non-root" in p for p in m.dockerfile_problems(root, "tb_service", "tb"))
    both = (
        (m.DOCKER / "tb_service.Dockerfile")
        .read_text()
        .replace("--extra tb", "--extra tb --extra gpu")
    )
    assert any("extras" in p for p in m.dockerfile_problems(both, "tb_service", "tb"))


# --- docker compose ------------------------------------------------------------------------


@pytest.mark.parametrize("path", [m.COMPOSE, m.COMPOSE_GPU], ids=lambda p: p.name)
def test_compose_schema(path: Path) -> None:
    res = m.check_compose(path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_compose_invariants() -> None:
    doc = yaml.safe_load(m.COMPOSE.read_text())
    assert m.compose_problems(doc) == []
    assert doc["networks"]["backend"]["internal"] is True
    for name in ("tb_service", "bc_service", "postgres"):
        assert doc["services"][name]["networks"] == ["backend"]


def test_compose_gpu_override() -> None:
    assert m.compose_gpu_problems(yaml.safe_load(m.COMPOSE_GPU.read_text())) == []


def test_compose_settings_exist() -> None:
    doc = yaml.safe_load(m.COMPOSE.read_text())
    keys = {
        k
        for svc in doc["services"].values()
        for k in svc.get("environment", {})
        if k.startswith("IRMI_")
    }
    problems, _ = m.setting_problems(keys)
    assert problems == []


def test_broken_compose_fails(tmp_path: Path) -> None:
    doc = yaml.safe_load(m.COMPOSE.read_text())
    bad = copy.deepcopy(doc)
    bad["services"]["tb_service"]["healthcheck"]["retries"] = "three"
    bad["services"]["gateway"]["depends_on"]["postgres"]["condition"] = "service_ok"
    path = tmp_path / "compose.yml"
    path.write_text(yaml.safe_dump(bad))
    assert m.check_compose(path).returncode != 0
    exposed = copy.deepcopy(doc)
    exposed["services"]["bc_service"]["ports"] = ["8002:8002"]
    exposed["services"]["postgres"]["volumes"] = []
    exposed["services"]["tb_service"]["user"] = "root"
    problems = m.compose_problems(exposed)
    for text in ("bc_service publishes", "postgres data", "tb_service runs as"):
        assert any(text in p for p in problems), text


def _third_party_imports(packages: list[str]) -> set[str]:
    """Top-level modules imported by the runtime code of ``packages`` (training code and
    tests excluded), standard library and the repository's own packages left out."""
    import ast
    import sys

    own = {"shared", "gateway", "tb_service", "bc_service"}
    found: set[str] = set()
    for package in packages:
        for path in (m.REPO / package).rglob("*.py"):
            if "train" in path.relative_to(m.REPO).parts or "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in own and top not in sys.stdlib_module_names:
                        found.add(top)
    return found


@pytest.mark.parametrize(
    ("package", "extra"),
    [("gateway", "gateway"), ("tb_service", "tb"), ("bc_service", "bc"), ("bc_service", "gpu")],
)
def test_image_dependencies_cover_the_code(package: str, extra: str) -> None:
    """Every third-party module the service (and shared/) imports at run time is installed by
    the one extra its image gets, so the image cannot fail with ImportError."""
    from importlib.metadata import packages_distributions

    try:
        locked = m.locked_packages(extra)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    dists = packages_distributions()
    # shared.model imports onnxruntime lazily, when a model is loaded: the gateway loads none.
    unused = {"gateway": {"onnxruntime"}}.get(package, set())
    missing = {}
    for module in sorted(_third_party_imports(["shared", package]) - unused):
        # PEP 503 names: "fhir.resources" is locked as "fhir-resources".
        names = {re.sub(r"[-_.]+", "-", d).lower() for d in dists.get(module, [module])}
        if extra == "gpu" and module == "onnxruntime":
            names = {"onnxruntime-gpu"}  # the GPU wheel provides the same module
        if not names & locked:
            missing[module] = sorted(names)
    assert missing == {}
