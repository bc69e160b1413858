"""Migrate the committed model cards to the typed card of ``shared.model.ModelCard``.

What changes (the ONNX files, hence every sha256, stay as they are):

* every interval ``{"value", "ci_low", "ci_high", "n"}`` becomes ``{"value", "ci95": [lo, hi],
  "n"}``, the shape the chest cards already use;
* ``metrics`` says which ``split`` its headline figures (``metrics.test``) come from and how
  the intervals were computed (``ci``); test entries that are neither a figure with its CI nor
  a table of counts move to ``metrics.test_details``;
* ``threshold`` becomes ``{"<name>": value, ..., "rule": how it was chosen}`` (mammography cards
  had ``{"<name>": {"value", "how"}}``); the chest screen's ``val_sensitivity`` /
  ``val_specificity`` go (they repeat ``metrics.val``, checked here);
* the mammography cards' preprocessing gets ``steps`` recorded from the stages the service
  builds (``MammoPipeline.model_pipeline``), replacing the hand-typed ``stages``, ``patch``,
  ``stride`` and ``clahe``. Those hand-typed values are compared with the code's parameters
  first, and so are the stages training builds its patches with (``preprocess_stages``) with
  the served ones: any difference is a DRIFT, reported, and that card is left unmigrated
  (exit status 1). The chest cards' steps (written by training from ``describe()``) are compared
  with the served pipelines the same way.

Run from the repository root: ``python scripts/migrate_cards.py [--check]`` (``--check``
reports without writing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bc_service.pipeline import MammoPipeline
from bc_service.pipeline.stages import preprocess_stages
from shared.model import Estimate, ModelCard, ModelRepository
from shared.transforms import Compose
from tb_service import preprocess

ROOT = Path(__file__).resolve().parents[1]
CHEST = {
    "chest-gate": lambda size: preprocess.gate_pipeline(size),
    "chest-abnormality": lambda size: preprocess.chest_pipeline(size),
}
BOOTSTRAP = "95% percentile bootstrap, 2000 resamples stratified by class (bc_service.train)"


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


def metrics(card: dict[str, Any], problems: list[str]) -> None:
    m = intervals(card.get("metrics") or {})
    m.setdefault("split", "test")
    m.setdefault("ci", BOOTSTRAP)
    test = m.get("test", {})
    details = {k: v for k, v in test.items() if not _is_figure(v)}
    if details:
        m["test"] = {k: v for k, v in test.items() if k not in details}
        m["test_details"] = {**m.get("test_details", {}), **details}
    card["metrics"] = m


def thresholds(card: dict[str, Any], problems: list[str]) -> None:
    t = card.get("threshold")
    if not isinstance(t, dict):
        return
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


def _params(pipe: Compose[Any], stage: str) -> dict[str, Any]:
    for step in pipe.describe():
        if step["stage"] == stage:
            params: dict[str, Any] = step["params"]
            return params
    raise KeyError(stage)


def mammo_preprocessing(card: dict[str, Any], problems: list[str]) -> None:
    # The stages as the service builds them (parameters do not depend on the loaded models).
    served = MammoPipeline(ModelRepository(ROOT / "no-models")).model_pipeline(card["name"])
    pre = dict(card.get("preprocessing") or {})
    # Training builds its patches with preprocess_stages(): the served stages must be the same.
    trained = Compose[Any](preprocess_stages()).describe()
    if served.describe()[: len(trained)] != trained and card["name"] == "mammo-patch":
        problems.append(f"training stages {trained} != served {served.describe()[: len(trained)]}")
    hand_typed = {
        ("clahe", "clip_limit"): ("enhance", "clip_limit"),
        ("clahe", "tiles"): ("enhance", "tiles"),
        ("stride", None): ("centers", "stride"),
        ("patch", None): ("heatmaps", "patch_size"),
    }
    for (key, sub), (stage, param) in hand_typed.items():
        if key not in pre:
            continue
        typed = pre[key][sub] if sub else pre[key]
        actual = _params(served, stage)[param]
        name = f"{key}.{sub}" if sub else key
        if typed != actual:
            problems.append(f"preprocessing.{name} = {typed!r} but {stage}.{param} = {actual!r}")
    stages = pre.get("stages")
    if stages is not None and stages != [s["stage"] for s in served.describe()][: len(stages)]:
        problems.append(f"preprocessing.stages {stages} are not the served stages")
    for key in ("stages", "patch", "stride", "clahe", "fn"):
        pre.pop(key, None)
    card["preprocessing"] = {
        **pre,
        "pipeline": f"bc_service.pipeline.MammoPipeline.model_pipeline({card['name']!r})",
        "steps": served.describe(),
    }


def chest_preprocessing(card: dict[str, Any], problems: list[str]) -> None:
    pre = card["preprocessing"]
    served = CHEST[card["name"]](int(pre["input_size"])).describe()
    if pre.get("steps") != served:
        problems.append(f"preprocessing.steps {pre.get('steps')} != served {served}")


def migrate(path: Path) -> tuple[dict[str, Any], list[str]]:
    card: dict[str, Any] = json.loads(path.read_text())
    problems: list[str] = []
    metrics(card, problems)
    thresholds(card, problems)
    if card["name"] in CHEST:
        chest_preprocessing(card, problems)
    else:
        mammo_preprocessing(card, problems)
    ModelCard.model_validate(card)
    return card, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report only, write nothing")
    args = parser.parse_args()
    paths = sorted(ROOT.glob("tb_service/models/*/*/card.json"))
    paths += sorted(ROOT.glob("bc_service/models/*/*/card.json"))
    status = 0
    for path in paths:
        card, problems = migrate(path)
        where = path.relative_to(ROOT)
        if problems:
            status = 1
            for p in problems:
                print(f"DRIFT {where}: {p}")
            print(f"left unmigrated: {where}")
            continue
        text = json.dumps(card, indent=2) + "\n"
        changed = text != path.read_text()
        if changed and not args.check:
            path.write_text(text)
        verdict = "ok" if not changed else "would migrate" if args.check else "migrated"
        print(f"{verdict}: {where}")
    return status


if __name__ == "__main__":
    sys.exit(main())
