"""Clients generated from the committed openapi.json work: openapi-python-client (in its own
hash-pinned environment, .tools/clientgen) generates a Python client that signs up, logs in,
uploads a real chest X-ray and reads the result and the heatmap from a really running gateway
and tb_service; openapi-typescript generates types that a small usage file type-checks
against with `tsc --noEmit` (both pinned in package.json / package-lock.json)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.openapi_export import DEFAULT_PATH as OPENAPI
from scripts.client_tools import clientgen_python, node_bin
from tests.procs import REPO, Service, spawn, wait_ready

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "openapi-python-client.yaml"


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)  # type: ignore[call-overload]
    assert out.returncode == 0, f"{cmd[0]} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def python_client(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The generator's Python and the folder holding the generated ``irmi_client``."""
    python = clientgen_python()
    out = tmp_path_factory.mktemp("python-client")
    env = {**os.environ, "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = _run(
        [
            str(python.parent / "openapi-python-client"),
            "generate",
            "--path",
            str(OPENAPI),
            "--config",
            str(CONFIG),
            "--meta",
            "none",
            "--output-path",
            str(out / "irmi_client"),
        ],
        env=env,
    )
    # Every route must make it into the client: the generator warns about what it drops.
    assert "Warning" not in run.stdout + run.stderr, run.stdout + run.stderr
    return python, out


@pytest.fixture(scope="module")
def chest_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    from tests.web.conftest import gateway_env, real_chest_models

    if not real_chest_models():
        pytest.skip("the trained chest models are not in tb_service/models")
    tmp = tmp_path_factory.mktemp("client-stack")
    logs = tmp / "logs"
    started: list[Service] = []
    try:
        tb = spawn("tb_service", {"IRMI_TB_USE_GPU": "false"}, log_dir=logs)
        started.append(tb)
        # No bc_service: the chest path never calls it.
        gw = spawn("gateway", gateway_env(tmp, tb.url, "http://127.0.0.1:9"), log_dir=logs)
        started.append(gw)
        for svc in started:
            wait_ready(svc, timeout=180)
        yield gw
    finally:
        for svc in reversed(started):
            svc.stop()


def test_generated_python_client_screens_a_real_chest_xray(
    python_client: tuple[Path, Path], chest_stack: Service
) -> None:
    from tests.web.conftest import real_chest_xray

    xray = real_chest_xray()
    if xray is None:
        pytest.skip("no NIH chest X-ray under $IRMI_DATA_DIR")
    python, generated = python_client
    email = f"client-{uuid.uuid4().hex[:8]}@example.org"
    run = _run(
        [
            str(python),
            str(HERE / "python_usage.py"),
            chest_stack.url,
            email,
            "generated-42-x",
            str(xray),
        ],
        env={"PYTHONPATH": str(generated), "PATH": os.environ.get("PATH", "")},
        cwd=str(generated),
    )
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["status"] == "succeeded"
    assert out["category"] in {"review_recommended", "no_finding_flagged", "outside_population"}
    assert 0 <= out["score"] <= 100
    assert "chest-abnormality" in out["models"]
    assert out["heatmap_png"] and out["heatmap_bytes"] > 1000
    assert out["heatmap_url"].startswith(f"/v1/studies/{out['study_id']}/heatmaps/")
    assert out["refused_code"] == "unsupported_format"


def test_typescript_types_check_against_the_usage_file(tmp_path: Path) -> None:
    generate, tsc = node_bin("openapi-typescript"), node_bin("tsc")
    for name in ("usage.ts", "tsconfig.json"):
        shutil.copy(HERE / name, tmp_path / name)
    _run([str(generate), str(OPENAPI), "-o", str(tmp_path / "irmi-api.d.ts")], cwd=str(REPO))
    _run([str(tsc), "-p", str(tmp_path / "tsconfig.json")], cwd=str(tmp_path))


def test_the_type_check_fails_on_a_document_without_the_conventions(tmp_path: Path) -> None:
    """The check can fail: FastAPI's default operation ids and a free-string code break it."""
    doc = json.loads(OPENAPI.read_text())
    for methods in doc["paths"].values():
        for op in methods.values():
            op["operationId"] = op["operationId"] + "_v1_default"
    doc["components"]["schemas"]["ErrorBody"]["properties"]["code"].pop("enum")
    (tmp_path / "openapi.json").write_text(json.dumps(doc))
    for name in ("usage.ts", "tsconfig.json"):
        shutil.copy(HERE / name, tmp_path / name)
    _run(
        [str(node_bin("openapi-typescript")), "openapi.json", "-o", "irmi-api.d.ts"],
        cwd=str(tmp_path),
    )
    out = subprocess.run(
        [str(node_bin("tsc")), "-p", "tsconfig.json"], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "logIn" in out.stdout and "Unused '@ts-expect-error'" in out.stdout
