"""A run's per-image scores as CSV, for the admin who uploaded the films (the file names are
the site's own)."""

from __future__ import annotations

import csv
import io

from gateway.validation.tables import ValidationItem

COLUMNS = [
    "file",
    "label",
    "status",
    "probability",
    "score",
    "outside_population",
    "reasons",
    "distance",
    "model",
    "error_code",
]


def _safe(value: str) -> str:
    """Spreadsheet formula injection guard: a cell never starts with = + - @."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def scores_csv(items: list[ValidationItem]) -> str:
    groups = sorted({k for i in items for k in (i.subgroups or {})})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS + groups)
    for i in items:
        rel = i.reliability or {}
        model = i.model or {}
        writer.writerow(
            [
                _safe(i.file_name),
                i.label,
                i.status,
                "" if i.probability is None else f"{i.probability:.6f}",
                "" if i.score is None else f"{i.score:.2f}",
                "" if i.outside_population is None else str(bool(i.outside_population)).lower(),
                ";".join(rel.get("reasons") or []),
                "" if rel.get("distance") is None else rel["distance"],
                f"{model.get('name', '')}/{model.get('version', '')}" if model else "",
                i.error_code or "",
            ]
            + [_safe(str((i.subgroups or {}).get(g, ""))) for g in groups]
        )
    return out.getvalue()
