"""Print the README's table of every setting (environment variable, service, default) from the
services' Settings classes: ``PYTHONPATH=. python scripts/settings_table.py``.

tests/deploy/test_readme.py checks that the README's "Deploying" section names every one.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from pydantic_core import PydanticUndefined

SERVICES = [
    ("gateway", "IRMI_GATEWAY_"),
    ("tb_service", "IRMI_TB_"),
    ("bc_service", "IRMI_BC_"),
    ("dicom_node", "IRMI_DICOM_"),
]
REPO = Path(__file__).resolve().parent.parent

MEANING = {
    "host": "bind address (0.0.0.0 in the images)",
    "port": "listening port",
    "log_level": "log level",
    "log_json": "one JSON object per log line",
    "dev_mode": "generate missing secrets; never in production (read from `IRMI_DEV_MODE`)",
    "data_dir": "real-data folder (training, evaluation; read from `IRMI_DATA_DIR`)",
    "max_upload_bytes": "largest accepted upload",
    "max_image_pixels": "largest decoded image (pixels)",
    "max_image_side": "largest decoded image side",
    "onnx_intra_op_threads": "ONNX Runtime threads per operator (0: all cores)",
    "onnx_inter_op_threads": "ONNX Runtime parallel operators",
    "use_gpu": "take CUDAExecutionProvider when it is really available",
    "cpu_workers": "threads for CPU-heavy work kept off the event loop",
    "models_dir": "model repository (in the image)",
    "required_models": "models that must load before the service is ready (JSON list)",
    "tb_url": "tb_service base URL",
    "bc_url": "bc_service base URL",
    "database_url": "SQLAlchemy URL: SQLite file, or `postgresql+asyncpg://...`",
    "jwt_secret": "token signing key (required outside dev mode; a Secret)",
    "upstream_connect_timeout_s": "connect timeout to tb_service / bc_service",
    "upstream_max_connections": "connection pool size per upstream",
    "upstream_retry_after_s": "Retry-After sent when an upstream is down",
    "database_echo": "log SQL statements (debugging)",
    "migrate_on_startup": "run the Alembic migrations at start-up (PostgreSQL advisory lock)",
    "store": "image store backend: `local` disk or `s3`",
    "store_dir": "folder of the local image store (a volume)",
    "s3_endpoint_url": "S3 endpoint (empty: AWS)",
    "s3_bucket": "S3 bucket of the image store",
    "s3_region": "S3 region",
    "s3_access_key_id": "S3 access key (a Secret)",
    "s3_secret_access_key": "S3 secret key (a Secret)",
    "s3_prefix": "key prefix inside the bucket",
    "jwt_issuer": "JWT issuer claim",
    "access_token_ttl_s": "access token lifetime",
    "refresh_token_ttl_s": "refresh token lifetime",
    "password_min_length": "shortest accepted password",
    "login_lockout_s": "lockout after too many failed logins",
    "max_views": "mammogram views per exam",
    "hsts": "send Strict-Transport-Security (behind TLS)",
    "events_poll_s": "how often the replica's one event poller reads the database",
    "gate_model": "validity-gate model name",
    "seg_model": "lung segmentation model behind the chest crop (lung_seg_crop)",
    "orientation_model": "chest-orientation model (turns rotated films upright); optional",
    "abnormality_model": "abnormality model name",
    "strict_preprocessing": "refuse to start when a card's preprocessing differs from the code",
    "max_batch_size": "largest inference batch",
    "retry_after_s": "Retry-After on 503 overloaded",
    "heatmap": "compute heatmaps",
    "heatmap_max_alpha": "heatmap overlay opacity",
    "patch_batch_size": "patches per ONNX Runtime batch",
    "heatmaps": "compute heatmaps",
}

# Shared settings read without the service prefix.
UNPREFIXED = {"dev_mode": "IRMI_DEV_MODE", "data_dir": "IRMI_DATA_DIR"}


def _default(field: Any) -> str:
    if field.default_factory is not None:
        return "computed"
    value = field.default
    if value is PydanticUndefined or value is None:
        return "none"
    text = str(value)
    if str(REPO) in text:
        text = text.replace(str(REPO), "/app")  # the repository root is /app in the images
    if isinstance(value, bool):
        text = text.lower()
    return f"`{text}`" if text else "`''`"


def rows() -> list[tuple[str, str, str, str]]:
    """(variable, service, default, meaning) for every setting of every service."""
    out = []
    seen_unprefixed = set()
    for package, prefix in SERVICES:
        settings = importlib.import_module(f"{package}.settings").Settings
        for name, field in settings.model_fields.items():
            if name in UNPREFIXED:
                if name in seen_unprefixed:
                    continue
                seen_unprefixed.add(name)
                out.append((UNPREFIXED[name], "all", _default(field), MEANING[name]))
                continue
            meaning = MEANING.get(name) or field.description or ""
            out.append((f"{prefix}{name.upper()}", package, _default(field), meaning))
    return out


def env_names() -> set[str]:
    return {r[0] for r in rows()}


def markdown() -> str:
    """One row per setting; a setting all three services share with one default is one row."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    services: dict[tuple[str, str, str], list[str]] = {}
    for var, service, default, meaning in rows():
        key = (var.split("_", 2)[-1] if service != "all" else var, default, meaning)
        grouped.setdefault(key, []).append(var)
        services.setdefault(key, []).append(service)
    lines = [
        "| environment variable | service | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for (_, default, meaning), names in grouped.items():
        who = services[(_, default, meaning)]
        label = "all" if len(who) == len(SERVICES) or who == ["all"] else ", ".join(who)
        cell = ", ".join(f"`{n}`" for n in names)
        lines.append(f"| {cell} | {label} | {default} | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("IRMI_DEV_MODE", "1")
    print(markdown())
