"""The error-code registry (shared.errors.error_codes) holds every code the services answer
with: the codes of the IRMIError subclasses, and every literal code the sources pass to the
envelope (``error_response(status, "code", ...)``, ``ErrorBody(code="...")``, ``{"code":
"..."}``). A new code goes into the registry as an IRMIError subclass in shared/errors.py."""

from __future__ import annotations

import ast
from pathlib import Path

from shared.errors import IRMIError, error_codes
from tests.procs import REPO

PACKAGES = ("shared", "gateway", "tb_service", "bc_service")


def _literal_codes(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name == "error_response" and len(node.args) >= 2:
                arg = node.args[1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.add(arg.value)
            for kw in node.keywords:
                if name == "ErrorBody" and kw.arg == "code" and isinstance(kw.value, ast.Constant):
                    found.add(str(kw.value.value))
        elif isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if "system" in keys:  # a FHIR/DICOM coding ({"system", "code"}), not an error body
                continue
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "code"
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                ):
                    found.add(value.value)
    return found


def test_every_literal_code_in_the_sources_is_registered() -> None:
    registry = set(error_codes())
    used: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for code in _literal_codes(ast.parse(path.read_text(), str(path))):
                used.setdefault(code, str(path.relative_to(REPO)))
    assert used, "the scan finds the literal codes"
    unknown = {code: where for code, where in used.items() if code not in registry}
    assert not unknown, f"add these to shared/errors.py as IRMIError subclasses: {unknown}"


def test_registry_holds_every_subclass_and_the_design_codes() -> None:
    registry = error_codes()
    assert registry == sorted(set(registry))
    design = {
        "unsupported_format", "invalid_image", "image_too_large", "not_a_chest_xray",
        "not_a_mammogram", "invalid_view", "payload_too_large", "unauthorized", "forbidden",
        "not_found", "rate_limited", "overloaded", "service_unavailable", "processing_failed",
    }  # fmt: skip
    assert design <= set(registry)
    pending: list[type[IRMIError]] = [IRMIError]
    while pending:
        cls = pending.pop()
        assert cls.code in registry, cls
        pending.extend(cls.__subclasses__())


def test_scan_finds_a_literal_code(tmp_path: Path) -> None:
    src = 'error_response(418, "teapot", "x")\nErrorBody(code="kettle")\nd = {"code": "pot"}\n'
    assert _literal_codes(ast.parse(src)) == {"teapot", "kettle", "pot"}
