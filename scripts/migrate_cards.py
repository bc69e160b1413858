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
  with the served pipelines the same way;
* the chest screen (``chest-abnormality``) gets its ``operating_point`` section
  (:class:`shared.model.CardOperatingPoint`) from what the card already says: the threshold
  ``threshold.abnormal`` x 100 on the 0-100 score scale, and ``metrics.test`` sensitivity and
  specificity with their 95% CIs, ``n`` from the test counts (tp + fn, tn + fp), measured on
  the test split of ``training_data.splits``.

Run from the repository root: ``python scripts/migrate_cards.py [--check]`` (``--check``
reports without writing).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bc_service.pipeline.cards import SUPERSEDED, mammo_steps, served_preprocessing
from bc_service.pipeline.stages import preprocess_stages
from shared.model import ModelCard
from shared.train.card_writer import operating_point_section, typed_metrics, typed_thresholds
from shared.transforms import Compose
from tb_service import preprocess
from tb_service.lungseg import committed_seg_model, seg_pipeline

ROOT = Path(__file__).resolve().parents[1]
# The served pipeline of each tb_service card, from its input size and the card itself (a
# screen is served with the lung crop and working side its card records).
CHEST: dict[str, Callable[[int, ModelCard], Compose[Any]]] = {
    "chest-gate": lambda size, _card: preprocess.gate_pipeline(size),
    "chest-orientation": lambda size, _card: preprocess.gate_pipeline(size),
    "chest-abnormality": lambda size, card: preprocess.chest_pipeline_for(
        card, size, committed_seg_model()
    ),
    "lung-seg": lambda size, _card: seg_pipeline(size),
}
BOOTSTRAP = "95% percentile bootstrap, 2000 resamples stratified by class (bc_service.train)"


def _params(pipe: Compose[Any], stage: str) -> dict[str, Any]:
    for step in pipe.describe():
        if step["stage"] == stage:
            params: dict[str, Any] = step["params"]
            return params
    raise KeyError(stage)


def mammo_preprocessing(card: dict[str, Any], problems: list[str]) -> None:
    served = mammo_steps(card["name"])
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
    card["preprocessing"] = {**pre, **served_preprocessing(card["name"])}


def chest_preprocessing(card: dict[str, Any], problems: list[str]) -> None:
    pre = card["preprocessing"]
    served = CHEST[card["name"]](int(pre["input_size"]), ModelCard.model_validate(card)).describe()
    if pre.get("steps") != served:
        problems.append(f"preprocessing.steps {pre.get('steps')} != served {served}")


def test_split_text(card: dict[str, Any]) -> str:
    """Exactly which films ``metrics.test`` was measured on, from the card's own records."""
    test = card["metrics"]["test"]
    counts = test["counts"]
    pos, neg = int(counts["tp"] + counts["fn"]), int(counts["tn"] + counts["fp"])
    per_source = (card.get("training_data", {}).get("splits") or {}).get("test", {})
    sources = " + ".join(f"{name} ({n} films)" for name, n in per_source.items() if n)
    rule = (card.get("threshold") or {}).get("rule", "")
    chosen = f"; threshold chosen on the val split ({rule})" if rule else ""
    return (
        f"in-distribution test split of the training sources: {sources}, {pos + neg} films "
        f"({pos} abnormal, {neg} normal), held out from training and tuning{chosen}. Not "
        "measured on films from other hospitals (see limitations)."
    )


def chest_operating_point(card: dict[str, Any], problems: list[str]) -> None:
    if card["name"] != "chest-abnormality" or "operating_point" in card:
        return
    threshold = (card.get("threshold") or {}).get("abnormal")
    test = card.get("metrics", {}).get("test", {})
    if not isinstance(threshold, int | float) or "counts" not in test:
        problems.append("no threshold.abnormal or metrics.test counts for the operating point")
        return
    point = operating_point_section(threshold, test, test_split_text(card))
    items = list(card.items())
    at = [k for k, _ in items].index("threshold") + 1  # beside the threshold it reads
    card.clear()
    card.update([*items[:at], ("operating_point", point), *items[at:]])


def migrate(path: Path) -> tuple[dict[str, Any], list[str]]:
    card: dict[str, Any] = json.loads(path.read_text())
    problems: list[str] = []
    typed_metrics(card, BOOTSTRAP)
    problems += typed_thresholds(card)
    if card["name"] in CHEST:
        chest_preprocessing(card, problems)
        chest_operating_point(card, problems)
    elif (card["name"], str(card["version"])) not in SUPERSEDED:
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
