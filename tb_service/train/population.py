"""Fit the population distance of :mod:`tb_service.reliability` (scikit-learn, no TF): source
means and a Ledoit-Wolf shrunk covariance of the source-centred training embeddings, and the
limit at a quantile of the validation films' distances."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from tb_service.reliability import PopulationDistance


def fit_population(
    train_emb: NDArray[Any],
    train_groups: NDArray[Any],
    val_emb: NDArray[Any],
    quantile: float = 0.99,
) -> PopulationDistance:
    """Means per group, tied shrunk covariance on ``train``; limit = ``quantile`` of ``val``."""
    from sklearn.covariance import LedoitWolf

    z = np.asarray(train_emb, np.float64)
    groups = tuple(sorted({str(g) for g in train_groups}))
    g = np.asarray([str(v) for v in train_groups])
    means = np.stack([z[g == k].mean(axis=0) for k in groups])
    centred = np.concatenate([z[g == k] - means[i] for i, k in enumerate(groups)])
    cov = LedoitWolf().fit(centred).covariance_
    precision = np.linalg.pinv(cov)
    unscaled = PopulationDistance(means, precision, 1.0, quantile, groups)
    limit = float(np.quantile(unscaled.raw(val_emb), quantile))
    return PopulationDistance(means, precision, limit, quantile, groups)
