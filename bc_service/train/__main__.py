"""``python -m bc_service.train [{v2,screen,density,all,gate,activations,patch,oof,view}]
[--epochs-scale F]``: ``v2`` trains mammo-view/2 and mammo-density/1 (minutes); ``all``
retrains model 1's gate, patch and view models (an hour on 2 CPU threads).

With ``--source cbis-ddsm`` or ``--source inbreast`` and ``--data DIR``: train and evaluate
the patch and view models on that dataset (:mod:`bc_service.train.byod`); the results go to
``--out`` (default ``var/mammo-train/<source>/``), the committed models stay as they are."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

SOURCES = ("mini-mias", "cbis-ddsm", "inbreast")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bc_service.train")
    parser.add_argument(
        "step",
        nargs="?",
        default="all",
        choices=["v2", "screen", "density", "all", "patch", "gate", "oof", "view", "activations"],
    )
    parser.add_argument("--epochs-scale", type=float, default=1.0)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data and 1 epoch: checks the code paths only"
    )
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default="mini-mias",
        help="dataset layout: mini-mias (the committed models) or a set of your own",
    )
    parser.add_argument("--data", type=Path, help="the dataset folder (default: IRMI_DATA_DIR)")
    parser.add_argument("--out", type=Path, help="results of --source cbis-ddsm / inbreast")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from bc_service.train.workspace import Config
    from shared.settings import default_data_dir

    cfg = Config(data_dir=default_data_dir())
    for f in ("patch_epochs", "fold_epochs", "act_epochs", "gate_epochs"):
        setattr(cfg, f, max(1, round(getattr(cfg, f) * args.epochs_scale)))
    if args.smoke:
        cfg.per_lesion, cfg.normal_per_image, cfg.max_chest, cfg.folds = 2, 1, 20, 2
        for f in ("patch_epochs", "fold_epochs", "act_epochs", "gate_epochs"):
            setattr(cfg, f, 1)
    if args.source != "mini-mias":
        from bc_service.train import byod
        from bc_service.train.sources import LayoutError

        if args.data is None:
            parser.error(f"--source {args.source} needs --data DIR (the dataset folder)")
        if args.step != "all":
            parser.error(f"--source {args.source} runs every step: leave out {args.step!r}")
        try:
            byod.run(args.source, args.data, cfg, args.out, n_boot=200 if args.smoke else 2000)
        except LayoutError as exc:
            raise SystemExit(f"{args.source}: {exc}") from None
        return
    from bc_service.train import steps

    if args.data is not None:  # the mini-mias folder itself, or the folder holding it
        cfg.data_dir = args.data.parent if (args.data / "labels.csv").exists() else args.data
    steps.run(args.step, cfg)


if __name__ == "__main__":
    main()
