"""Patient-level cross-validation folds over all of mini-MIAS: both breasts of a woman in one
fold, folds stratified by label (scikit-learn's StratifiedGroupKFold, fixed seed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

N_FOLDS = 5
FOLD_SEED = 0


def woman(path: str) -> int:
    """mini-MIAS numbers the images of one woman 2k-1 and 2k (``mdb001`` and ``mdb002``)."""
    return (int(path[3:6]) + 1) // 2


def patient_folds(
    paths: Sequence[str], labels: Sequence[str], n_folds: int = N_FOLDS, seed: int = FOLD_SEED
) -> NDArray[np.int64]:
    """The fold (0..n_folds-1) of every image: grouped by woman, stratified by label."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.array([woman(p) for p in paths])
    y = np.array(list(labels))
    fold = np.full(len(paths), -1, np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, held_out) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
        fold[held_out] = k
    return fold
