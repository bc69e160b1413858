"""Readers of other mammography datasets' layouts into the training's per-view records
(:mod:`bc_service.train.sources.records`): CBIS-DDSM and INbreast. mini-mias, the set the
committed models are trained on, is read by :func:`bc_service.train.data.read_mias`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bc_service.train.sources import cbis_ddsm, inbreast
from bc_service.train.sources.records import LayoutError, SourceCase

READERS: dict[str, Callable[[Path, int], list[SourceCase]]] = {
    cbis_ddsm.NAME: cbis_ddsm.read,
    inbreast.NAME: inbreast.read,
}


def read_source(name: str, root: Path, seed: int = 0) -> list[SourceCase]:
    """The records of the dataset at ``root`` in ``name``'s layout (LayoutError if not)."""
    if name not in READERS:
        raise LayoutError(f"unknown source {name!r}: one of {', '.join(READERS)}")
    if not root.is_dir():
        raise LayoutError(f"{root} is not a folder.")
    return READERS[name](root, seed)


__all__ = ["READERS", "LayoutError", "SourceCase", "read_source"]
