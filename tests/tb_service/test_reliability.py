"""The population distance (tb_service.reliability): inside/outside on synthetic embeddings,
the committed file's integrity, and real films through the served path."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.contracts.screening import ReliabilityReason, assess_reliability
from shared.model import ModelIntegrityError, OnnxModel
from shared.settings import default_data_dir
from tb_service.reliability import PopulationDistance, load_population

pytest.importorskip("sklearn")

from tb_service.train.population import fit_population
from tests.procs import served_version

D = 12


def _two_sources(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, (n, D))
    b = rng.normal(0, 1, (n, D)) + np.r_[6.0, np.zeros(D - 1)]
    return np.concatenate([a, b]), np.array(["a"] * n + ["b"] * n)


@pytest.fixture(scope="module")
def pop() -> PopulationDistance:
    train, groups = _two_sources(400, 0)
    val, _ = _two_sources(200, 1)
    return fit_population(train, groups, val, quantile=0.99)


def test_validation_films_are_inside_at_the_quantile(pop: PopulationDistance) -> None:
    val, _ = _two_sources(200, 1)
    d = pop.distance(val)
    assert pop.quantile == 0.99 and pop.groups == ("a", "b")
    assert np.mean(d > 1.0) == pytest.approx(0.01, abs=0.006)


def test_new_films_of_either_source_are_mostly_inside(pop: PopulationDistance) -> None:
    fresh, _ = _two_sources(500, 2)
    assert np.mean(pop.distance(fresh) > 1.0) < 0.04
    # The source means themselves are nearest to nothing but themselves: far inside.
    assert np.all(pop.distance(pop.means) < 0.3)


def test_films_between_or_beyond_the_sources_are_outside(pop: PopulationDistance) -> None:
    rng = np.random.default_rng(3)
    shifted = rng.normal(0, 1, (100, D)) + np.r_[np.zeros(D - 1), 8.0]  # a new direction
    assert np.all(pop.distance(shifted) > 1.0)
    scaled = rng.normal(0, 4, (100, D))  # same centre, far wider spread
    assert np.mean(pop.distance(scaled) > 1.0) > 0.9


def test_non_finite_embedding_is_outside_and_wrong_width_refused(pop: PopulationDistance) -> None:
    bad = np.full((1, D), np.nan)
    assert pop.distance(bad)[0] > 1.0 and np.isfinite(pop.distance(bad)[0])
    with pytest.raises(ValueError, match="features"):
        pop.distance(np.zeros((1, D + 1)))


def test_distance_above_one_raises_the_flag(pop: PopulationDistance) -> None:
    far = assess_reliability([], float(pop.distance(np.full((1, D), 9.0))[0]), pop.quantile)
    assert far.outside_population and far.reasons == [
        ReliabilityReason.far_from_validated_population
    ]
    near = assess_reliability([], float(pop.distance(pop.means[:1])[0]), pop.quantile)
    assert not near.outside_population and near.limit_quantile == 0.99


def test_save_load_round_trip(pop: PopulationDistance, tmp_path: Path) -> None:
    pop.save(tmp_path / "population.npz")
    back = PopulationDistance.load(tmp_path / "population.npz")
    z = np.random.default_rng(4).normal(0, 2, (20, D))
    assert np.allclose(back.distance(z), pop.distance(z)) and back.groups == pop.groups


MODELS = Path(__file__).resolve().parents[2] / "tb_service" / "models"
# The served screen: the highest committed chest-abnormality version (/2 and later carry a
# population file).
SERVED = MODELS / "chest-abnormality" / served_version(MODELS, "chest-abnormality")
needs_v2 = pytest.mark.skipif(
    not (SERVED / "population.npz").exists(), reason="no chest-abnormality with a population"
)


@needs_v2
def test_committed_population_file_is_checked_against_the_card(tmp_path: Path) -> None:
    m = OnnxModel(SERVED, use_gpu=False)
    assert load_population(m) is not None
    copy = tmp_path / SERVED.name
    shutil.copytree(SERVED, copy)
    card = json.loads((copy / "card.json").read_text())
    card["reliability"]["sha256"] = "0" * 64
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError, match=r"population\.npz"):
        load_population(OnnxModel(copy, use_gpu=False))


DATA = default_data_dir()


@needs_v2
@pytest.mark.skipif(not (DATA / "mini-mias").exists(), reason=f"no mini-mias under {DATA}")
async def test_served_path_calls_a_mammogram_outside_and_chest_films_inside() -> None:
    """The engine's own stages with the committed models: the gate is bypassed for the
    mammogram (it would refuse it), so the distance is the second line of defence."""
    from tb_service.settings import MODELS_DIR
    from tests.tb_service.svc_helpers import client_for, settings_for

    mammogram = sorted((DATA / "mini-mias").glob("**/mdb*.png"))[0].read_bytes()
    films = [
        (DATA / "nih-cxr14" / r["path"]).read_bytes()
        for r in csv.DictReader((DATA / "nih-cxr14" / "splits.csv").open())
        if r["split"] == "test"
    ][:6]
    async with client_for(settings_for(MODELS_DIR)) as (app, _client):
        engine = app.state.ctx.extras["chest"]
        assert engine.abnormality.version == SERVED.name and engine.population is not None

        def served(data: bytes) -> Any:
            prepared = engine.prepare(data)
            scored = engine._score([prepared], enforce_gate=False)[0]
            return engine.finish(prepared, scored, heatmap=False)

        far = served(mammogram)
        assert far.reliability.outside_population and far.reliability.distance > 1.0
        assert ReliabilityReason.far_from_validated_population in far.reliability.reasons
        near = [served(f).reliability for f in films]
        assert all(r.distance is not None for r in near)
        assert sum(not r.outside_population for r in near) >= 5
