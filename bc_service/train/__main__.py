"""``python -m bc_service.train {v2,screen,density,all,gate,activations,patch,oof,view}
[--epochs-scale F]``: ``v2`` trains mammo-view/2 and mammo-density/1 (minutes); ``all``
retrains model 1's gate, patch and view models (an hour on 2 CPU threads)."""

from __future__ import annotations

import argparse
import logging
import os


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bc_service.train")
    parser.add_argument(
        "step",
        choices=[
            "v2",
            "screen",
            "density",
            "all",
            "patch",
            "gate",
            "oof",
            "view",
            "activations",
        ],
    )
    parser.add_argument("--epochs-scale", type=float, default=1.0)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data and 1 epoch: checks the code paths only"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from bc_service.train import steps
    from bc_service.train.workspace import Config
    from shared.settings import default_data_dir

    cfg = Config(data_dir=default_data_dir())
    for f in ("patch_epochs", "fold_epochs", "act_epochs", "gate_epochs"):
        setattr(cfg, f, max(1, round(getattr(cfg, f) * args.epochs_scale)))
    if args.smoke:
        cfg.per_lesion, cfg.normal_per_image, cfg.max_chest = 2, 1, 20
        for f in ("patch_epochs", "fold_epochs", "act_epochs", "gate_epochs"):
            setattr(cfg, f, 1)
    steps.run(args.step, cfg)


if __name__ == "__main__":
    main()
