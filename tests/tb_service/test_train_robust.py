"""Robust-training pieces without TensorFlow: balanced sampling, the acquisition augmentation
ops, and the split of the served pipeline that training augments between."""

from __future__ import annotations

import numpy as np
import pytest

from shared.imaging import DecodedImage
from tb_service.preprocess import chest_pipeline
from tb_service.train.acquisition import (
    AcquisitionAugment,
    BitDepth,
    BlurSharpen,
    CropJitter,
    Gamma,
    Jpeg,
    Noise,
    Rescale,
)
from tb_service.train.crops import CropCache, split_pipeline
from tb_service.train.sampling import BalancedSampler
from tests.tb_service.svc_helpers import chest_like

# Label shares differ by source on purpose (as NIH 50% and Kermany 74% pneumonia do).
SOURCE = np.array(["nih"] * 40 + ["ker"] * 55)
LABEL = np.array([0] * 10 + [1] * 30 + [0] * 50 + [1] * 5)


def test_every_batch_is_balanced_over_source_and_label() -> None:
    sampler = BalancedSampler(SOURCE, LABEL, batch=32)
    batches = list(sampler.epoch(np.random.default_rng(0)))
    assert len(batches) == sampler.steps == len(SOURCE) // 32
    for b in batches:
        assert len(b) == 32
        for src in ("nih", "ker"):
            for y in (0, 1):
                assert int(np.sum((SOURCE[b] == src) & (LABEL[b] == y))) == 8
        # The source says nothing about the label: P(abnormal | source) = 1/2 for both.
        for src in ("nih", "ker"):
            assert LABEL[b][SOURCE[b] == src].mean() == 0.5


def test_small_cells_are_recycled_and_all_members_used() -> None:
    sampler = BalancedSampler(SOURCE, LABEL, batch=8)
    seen = np.concatenate(list(sampler.epoch(np.random.default_rng(1))))
    small = np.flatnonzero((SOURCE == "ker") & (LABEL == 1))  # 5 films
    assert set(small) <= set(seen.tolist())
    assert np.sum(np.isin(seen, small)) == sampler.steps * 2


def test_sampler_is_deterministic_with_a_seed() -> None:
    sampler = BalancedSampler(SOURCE, LABEL, batch=16)
    a = list(sampler.epoch(np.random.default_rng(7)))
    b = list(sampler.epoch(np.random.default_rng(7)))
    c = list(sampler.epoch(np.random.default_rng(8)))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_batch_must_split_evenly_over_cells() -> None:
    with pytest.raises(ValueError, match="multiple"):
        BalancedSampler(SOURCE, LABEL, batch=30)


def _film(seed: int = 0) -> np.ndarray:
    return chest_like(300, 260, seed=seed)


OPS = [Rescale(), BlurSharpen(), Noise(), Jpeg(), Gamma(), BitDepth()]


@pytest.mark.parametrize("op", OPS, ids=lambda o: type(o).__name__)
def test_ops_keep_shape_dtype_and_the_film(op: object) -> None:
    px = _film()
    for seed in range(5):
        out = op(px, np.random.default_rng(seed))  # type: ignore[operator]
        assert out.dtype == np.uint8 and out.shape == px.shape
        assert out.flags["C_CONTIGUOUS"]
        # still the same film: no op pushes the mean grey level far (no clipping to black/white)
        assert abs(float(out.mean()) - float(px.mean())) < 40
    changed = [
        not np.array_equal(op(px, np.random.default_rng(s)), px)  # type: ignore[operator]
        for s in range(5)
    ]
    assert any(changed)


@pytest.mark.parametrize(
    "op", [*OPS, CropJitter(), AcquisitionAugment()], ids=lambda o: type(o).__name__
)
def test_ops_are_deterministic_with_a_seed(op: object) -> None:
    px = _film(1)
    a = op(px, np.random.default_rng(3))  # type: ignore[operator]
    b = op(px, np.random.default_rng(3))  # type: ignore[operator]
    assert np.array_equal(a, b)


def test_bit_depth_and_gamma_do_what_they_say() -> None:
    px = _film(2)
    q = BitDepth(4, 4)(px, np.random.default_rng(0))
    assert len(np.unique(q)) <= 16
    g = Gamma(1.5, 1.5)(np.array([[0, 128, 255]], np.uint8), np.random.default_rng(0))
    assert g[0, 0] == 0 and g[0, 2] == 255 and g[0, 1] < 128


def test_rescale_down_and_up_loses_detail() -> None:
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, (128, 128)).astype(np.uint8)  # pure detail
    out = Rescale(0.5, 0.5)(px, rng)
    assert out.shape == px.shape and float(out.std()) < 0.8 * float(px.std())


def test_crop_jitter_trims_at_most_its_share() -> None:
    px = _film()
    out = CropJitter(0.06)(px, np.random.default_rng(0))
    assert out.dtype == np.uint8
    assert out.shape[0] >= 0.88 * px.shape[0] and out.shape[1] >= 0.88 * px.shape[1]


def test_augment_chain_outputs_a_uint8_film() -> None:
    aug = AcquisitionAugment()
    outs = [aug(_film(), np.random.default_rng(s)) for s in range(8)]
    assert all(o.dtype == np.uint8 and o.ndim == 2 for o in outs)
    assert len({o.tobytes() for o in outs}) == 8
    assert [d["op"] for d in aug.describe()][-1] == "Jpeg"


def test_head_then_tail_is_the_served_pipeline() -> None:
    """Training augments between head and tail: without augmentation it must be exactly the
    pipeline the service runs."""
    pipe = chest_pipeline()
    head, tail = split_pipeline(pipe)
    assert head.stage_names()[-1] != "clahe" and tail.stage_names()[0] == "clahe"
    assert head.stage_names() + tail.stage_names() == pipe.stage_names()
    img = DecodedImage(pixels=_film(3), format="png", bits_stored=8, value_range=(0.0, 255.0))
    served = pipe(img)
    split = tail(head(img))
    assert np.array_equal(served.image, split.image) and served.crop_box == split.crop_box


def test_working_side_is_the_smallest_source() -> None:
    """A 1,536 px original and its 384 px copy take the same path after the first step."""
    steps = {s["stage"]: s["params"] for s in chest_pipeline().describe()}
    assert steps["working_side"]["side"] == 384


def _tiny_cache(patients: list[str]) -> CropCache:
    n = len(patients)
    crops = [np.full((4, 5), i, np.uint8) for i in range(n)]
    return CropCache(
        flat=np.concatenate([c.ravel() for c in crops]),
        offset=np.arange(n, dtype=np.int64) * 20,
        shape=np.array([[4, 5]] * n, np.int32),
        scale=np.ones(n, np.float32),
        abnormal=np.ones(n, np.int8),
        subtype=np.full(n, -1, np.int8),
        split=np.array(["eval"] * n),
        dataset=np.array(["other"] * 2 + ["hannover-covid19"] * (n - 2)),
        path=np.array([f"x/{i}.png" for i in range(n)]),
        patient=np.array(patients),
        crop_box=np.array([[0, 0, 5, 4]] * n, np.int32),
        orig_size=np.array([[5, 4]] * n, np.int32),
        reasons=np.array([""] * n),
    )


def test_crop_cache_rows_and_patient_flags() -> None:
    pytest.importorskip("sklearn")
    from tb_service.train.robust_eval import patient_flags

    c = _tiny_cache(["o1", "o2", "p1", "p1", "p2", "p3", "p3"])
    assert c.crop(3).shape == (4, 5) and int(c.crop(3)[0, 0]) == 3
    m = c.dataset == "hannover-covid19"
    flagged = np.array([True, True, False, True, False, False, False])
    # Per patient of the masked rows only (the first two rows belong to another set).
    assert patient_flags(c, m, flagged).tolist() == [True, False, False]


def test_ensemble_of_one_is_temperature_scaling() -> None:
    pytest.importorskip("scipy")
    from tb_service.train.metrics import fit_temperature, softmax
    from tb_service.train.robust_eval import ensemble_p, fit_ensemble_temperature

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    logits = np.stack([np.zeros(400), 3.0 * (y - 0.5) + rng.normal(0, 2, 400)], axis=1)
    t = fit_ensemble_temperature([logits], y)
    assert t == pytest.approx(fit_temperature(logits, y), rel=0.05)
    assert np.allclose(ensemble_p([logits], t), softmax(logits / t)[:, 1])
    two = ensemble_p([logits, -logits], 1.0)
    assert np.allclose(two, 0.5)


def test_calibration_shift_restores_a_prior_the_temperature_cannot() -> None:
    """Logits of a network trained at a 50% prior, read on films 80% abnormal: the fitted
    shift moves the mean probability to the observed prevalence; a temperature alone does
    not."""
    pytest.importorskip("scipy")
    from tb_service.train.robust_eval import (
        ensemble_p,
        fit_ensemble_calibration,
        fit_ensemble_temperature,
    )

    rng = np.random.default_rng(1)
    y = (rng.random(2000) < 0.8).astype(int)
    margin = 1.5 * (2 * y - 1) + rng.normal(0, 1.5, 2000)
    logits = np.stack([np.zeros(2000), margin], axis=1)
    t, b = fit_ensemble_calibration([logits], y)
    assert b > 0.5  # towards the abnormal majority
    p_cal = ensemble_p([logits], t, b)
    p_t = ensemble_p([logits], fit_ensemble_temperature([logits], y))
    assert abs(p_cal.mean() - y.mean()) < 0.02 < abs(p_t.mean() - y.mean())
