"""``python -m tb_service.train {all,cache,baselines,gate,abnormality,subtype,experiments,report}``

* ``cache``        preprocess every image once (var/cache/*.npz)
* ``baselines``    shortcut baselines (size, aspect ratio, histogram, HOG) on the test splits
* ``gate``         train + export the chest-gate model
* ``abnormality``  train both backbones, keep the better on val, calibrate, threshold, export
* ``subtype``      the bacterial/viral head is a head of the abnormality net: same as above
* ``experiments``  cross-dataset runs and the output-activation table (shorter runs)
* ``report``       rewrite cards, reports and plots from var/results
* ``search``       robust-recipe search by leave-one-source-out val (search.md/json)
* ``robust``       retrain the chosen robust variant, publish chest-abnormality/3
* ``lung-seg``     train + export the lung segmentation model on lung-masks, then
  ``lung-seg-report``: its crop on the test films, the plausibility survey, card and report
* ``orientation``  train + export the chest-orientation model (rotation / mirror of a film)
* ``invariance``   the served score of each test film in every encoding and size (JSON + md)
* ``all``          everything above, in order

Data: ``--data-dir`` or ``IRMI_DATA_DIR`` or ``../shared/data``. Other layouts (Shenzhen /
Montgomery names, folder per class) are read by :mod:`tb_service.train.data`.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tb_service.train")
    parser.add_argument(
        "command",
        choices=[
            "all",
            "cache",
            "baselines",
            "gate",
            "abnormality",
            "subtype",
            "experiments",
            "report",
            "search",
            "robust",
            "lung-seg",
            "lung-seg-report",
            "orientation",
            "invariance",
        ],
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=15, help="abnormality epochs")
    parser.add_argument("--exp-epochs", type=int, default=8, help="experiment epochs")
    parser.add_argument("--gate-epochs", type=int, default=10)
    parser.add_argument("--orientation-epochs", type=int, default=20)
    parser.add_argument(
        "--reuse", action="store_true", help="orientation: reload the last trained network"
    )
    parser.add_argument(
        "--invariance-eval-films", type=int, default=100, help="per evaluation-only set"
    )
    parser.add_argument("--backbones", default="vgg,mobilenet")
    parser.add_argument("--search-epochs", type=int, default=10, help="robust search epochs")
    parser.add_argument("--variants", default="A,C,B,D", help="robust search variants")
    parser.add_argument("--variant", default=None, help="robust: override the search's choice")
    parser.add_argument("--seg-epochs", type=int, default=60, help="lung-seg epochs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log = logging.getLogger("irmi.train")

    from tb_service.train import commands

    start = time.perf_counter()
    cmd = args.command
    if cmd in ("all", "cache"):
        from tb_service.train.cache import build_chest_cache, build_gate_cache

        build_chest_cache(args.data_dir)
        build_gate_cache(args.data_dir)
    if cmd in ("all", "baselines"):
        commands.cmd_baselines(args.data_dir)
    if cmd in ("all", "gate"):
        commands.cmd_gate(args.data_dir, epochs=args.gate_epochs)
    if cmd in ("all", "abnormality", "subtype"):
        commands.cmd_abnormality(
            args.data_dir, epochs=args.epochs, backbones=tuple(args.backbones.split(","))
        )
    if cmd in ("all", "experiments"):
        commands.cmd_experiments(args.data_dir, epochs=args.exp_epochs)
    if cmd == "orientation":
        from tb_service.train.orientation import cmd_orientation

        cmd_orientation(args.data_dir, epochs=args.orientation_epochs, reuse=args.reuse)
    if cmd == "invariance":
        from tb_service.train.invariance import cmd_invariance

        cmd_invariance(args.data_dir, eval_only=args.invariance_eval_films)
    if cmd == "search":
        from tb_service.train.search import cmd_search

        cmd_search(args.data_dir, args.search_epochs, tuple(args.variants.split(",")))
    if cmd == "robust":
        from tb_service.train.robust import cmd_robust

        cmd_robust(args.data_dir, args.search_epochs, args.variant)
    if cmd in ("all", "experiments", "report", "baselines"):
        commands.cmd_report(args.data_dir)
    if cmd == "lung-seg":
        from tb_service.train.seg import cmd_lung_seg

        cmd_lung_seg(args.data_dir, epochs=args.seg_epochs)
    if cmd in ("lung-seg", "lung-seg-report"):
        from tb_service.train.seg import cmd_lung_seg_report

        cmd_lung_seg_report(args.data_dir)
    log.info("%s done in %.0f s", cmd, time.perf_counter() - start)


if __name__ == "__main__":
    main()
