"""The training packages: no import circle (in-function imports included), and everything
but the TensorFlow/PyTorch modules imports without TensorFlow, PyTorch, scikit-learn or
matplotlib (those are imported where they are used), as do the shared evaluation modules the
gateway will use."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shared/train", "tb_service/train", "bc_service/train")
# Modules that import TensorFlow (or PyTorch) at import time, by design.
FRAMEWORK_MODULES = {
    "tb_service.train.fit",
    "tb_service.train.fit_robust",
    "tb_service.train.export",
    "tb_service.train.nets",
    "tb_service.train.pretrain_probe",
    "tb_service.train.seg_fit",
    "bc_service.train.nets",
}
SHARED = ("shared.clock",)


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).glob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every module of ``known`` that ``path`` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def test_no_import_circle_in_training_packages() -> None:
    modules = _modules()
    graph = {m: _imports(p, set(modules)) - {m} for m, p in modules.items()}
    # Packages are imported by their modules implicitly: only module-to-module edges count.
    graph = {m: {d for d in deps if modules[d].name != "__init__.py"} for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append([*stack[stack.index(d) :], d])
            elif d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles
    assert "tb_service.train.commands" in graph["tb_service.train.__main__"]


def test_modules_import_without_frameworks() -> None:
    names = [m for m in _modules() if m not in FRAMEWORK_MODULES and not m.endswith("__main__")]
    blocked = ("tensorflow", "keras", "tf2onnx", "torch", "sklearn", "matplotlib")
    code = "".join(f"sys.modules[{b!r}] = None\n" for b in blocked) + "".join(
        f"importlib.import_module({name!r})\n" for name in [*SHARED, *names]
    )
    run = subprocess.run(
        [sys.executable, "-c", "import importlib, sys\n" + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
