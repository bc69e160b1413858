"""A film's position in the population's whitened space: the Euclidean distance of two
positions is their Mahalanobis distance in units of the limit, so the gateway can measure a
film against an adopted site's mean exactly as tb_service measures it against a source."""

from __future__ import annotations

import numpy as np

from tb_service.reliability import PopulationDistance
from tb_service.settings import MODELS_DIR
from tests.procs import served_version

# The served screen's population (the highest committed chest-abnormality version).
SCREEN = "chest-abnormality"
POPULATION = MODELS_DIR / SCREEN / served_version(MODELS_DIR, SCREEN) / "population.npz"


def test_positions_measure_the_population_distance() -> None:
    pop = PopulationDistance.load(POPULATION)
    rng = np.random.default_rng(0)
    emb = pop.means[0] + rng.normal(0, 0.5, size=(8, pop.means.shape[1]))
    pos = pop.position(emb)
    centres = pop.position(pop.means)
    nearest = np.linalg.norm(pos[:, None, :] - centres[None, :, :], axis=2).min(axis=1)
    np.testing.assert_allclose(nearest, pop.distance(emb), rtol=1e-9)
    # between two films too (the site-mean case): Mahalanobis with the same precision
    d = emb[0] - emb[1]
    want = np.sqrt(d @ pop.precision @ d) / pop.limit
    assert np.isclose(np.linalg.norm(pos[0] - pos[1]), want, rtol=1e-9)
