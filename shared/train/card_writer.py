"""Writing a trained model's ``card.json`` (training side): the entries of its inputs and
outputs, and the card itself, checked against :class:`shared.model.ModelCard`, the contract
the services read, with the ONNX file's sha256 and the time it was written."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.clock import timestamp
from shared.model import CardOperatingPoint, Estimate, ModelCard, TensorSpec, file_sha256


def card_tensor(name: str, shape: list[int | str | None], description: str = "") -> dict[str, Any]:
    """A float32 input or output entry (without a description when none is given)."""
    spec = TensorSpec(name=name, shape=shape, dtype="float32", description=description)
    return spec.model_dump(exclude={"description"} if not description else set())


def write_card(folder: Path, card: dict[str, Any]) -> None:
    """Record ``sha256`` of ``folder/model.onnx`` and ``created`` in ``card``, check it, and
    write ``folder/card.json``."""
    card["sha256"] = file_sha256(folder / "model.onnx")
    card["created"] = timestamp()
    ModelCard.model_validate(card)
    (folder / "card.json").write_text(json.dumps(card, indent=2, default=float) + "\n")


def intervals(value: Any) -> Any:
    """``{"value", "ci_low", "ci_high", ...}`` -> ``{"value", "ci95": [lo, hi], ...}``."""
    if isinstance(value, list):
        return [intervals(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: intervals(v) for k, v in value.items()}
    if "value" in out and "ci_low" in out and "ci_high" in out:
        lo, hi = out.pop("ci_low"), out.pop("ci_high")
        out = {"value": out.pop("value"), "ci95": [lo, hi], **out}
    return out


def _is_figure(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    if "ci95" in value:
        Estimate.model_validate(value)
        return True
    return all(isinstance(v, int | float) for v in value.values())  # a table of counts


def typed_metrics(card: dict[str, Any], ci: str) -> None:
    """``card["metrics"]`` in the typed card's shape: intervals as ``ci95``, ``split`` and ``ci``
    (how the intervals were computed) stated, and ``test`` entries that are neither a figure
    with its CI nor a table of counts moved to ``test_details``."""
    m = intervals(card.get("metrics") or {})
    m.setdefault("split", "test")
    m.setdefault("ci", ci)
    test = m.get("test", {})
    details = {k: v for k, v in test.items() if not _is_figure(v)}
    if details:
        m["test"] = {k: v for k, v in test.items() if k not in details}
        m["test_details"] = {**m.get("test_details", {}), **details}
    card["metrics"] = m


def typed_thresholds(card: dict[str, Any]) -> list[str]:
    """``card["threshold"]`` as ``{"<name>": value, ..., "rule": how}`` (from ``{"<name>":
    {"value", "how"}}``); the problems found (a threshold figure that disagrees with
    ``metrics.val``), which leave that figure in place."""
    problems: list[str] = []
    t = card.get("threshold")
    if not isinstance(t, dict):
        return problems
    out: dict[str, Any] = {}
    rules: dict[str, str] = {}
    for key, value in t.items():
        if isinstance(value, dict) and "value" in value:
            out[key] = value["value"]
            if "how" in value:
                rules[key] = str(value["how"])
        else:
            out[key] = value
    if rules:
        distinct = set(rules.values())
        out["rule"] = (
            distinct.pop()
            if len(distinct) == 1
            else "; ".join(f"{k}: {how}" for k, how in rules.items())
        )
    val = card.get("metrics", {}).get("val", {})
    for key, metric in (("val_sensitivity", "sensitivity"), ("val_specificity", "specificity")):
        if key in out:
            measured = (val.get(metric) or {}).get("value")
            if measured != out[key]:
                problems.append(f"threshold.{key} {out[key]} != metrics.val.{metric} {measured}")
                continue
            del out[key]
    card["threshold"] = out
    return problems


def operating_point_section(
    threshold: float, summary: Mapping[str, Any], measured_on: str
) -> dict[str, Any]:
    """The card's ``operating_point`` (:class:`shared.model.CardOperatingPoint`) for a screen
    read at the 0-1 probability ``threshold``: ``score_threshold`` = 100 x it, sensitivity and
    specificity with their 95% CIs from ``summary`` (a ``ScreenSummary`` or a card's
    ``metrics.test``: ``sensitivity``/``specificity`` as ``{"value", "ci95"}`` and ``counts``),
    ``n`` from the counts (tp + fn positives, tn + fp negatives), and ``measured_on`` (the
    films they were measured on, said exactly)."""
    counts = summary["counts"]
    section = {
        "score_threshold": round(100.0 * float(threshold), 4),
        "sensitivity": _rate(summary["sensitivity"], counts["tp"] + counts["fn"]),
        "specificity": _rate(summary["specificity"], counts["tn"] + counts["fp"]),
        "measured_on": measured_on,
    }
    return CardOperatingPoint.model_validate(section).model_dump(mode="json")


def _rate(figure: Mapping[str, Any], n: float) -> dict[str, Any]:
    lo, hi = figure["ci95"]
    return {"value": float(figure["value"]), "ci95": [float(lo), float(hi)], "n": int(n)}
