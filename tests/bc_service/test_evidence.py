"""mammo-view/2's evidence (bc_service.pipeline.evidence) on synthetic breasts: the bilateral
part is zero without the other breast and vanishes against an identical one, a bright mass
raises the statistics that look for it and its difference to the other breast."""

from __future__ import annotations

import numpy as np

from bc_service.pipeline import evidence as ev
from bc_service.pipeline.stages import MammoState, preprocess_stages
from shared.imaging import decode_image
from shared.transforms import Compose
from tests.imagegen import mammo_phantom, png_bytes


def _maps(img: np.ndarray) -> ev.BreastMaps:
    s: MammoState = Compose[MammoState](preprocess_stages())(
        MammoState(image=decode_image(png_bytes(img)))
    )
    assert s.work is not None and s.work_mask is not None and s.enhanced is not None
    return ev.breast_maps(s.work, s.work_mask, s.enhanced)


def _feature(x: np.ndarray, name: str) -> float:
    return float(x[ev.VIEW_FEATURES_V2.index(name)])


def test_without_the_other_breast_the_bilateral_part_is_zero() -> None:
    x = ev.view_inputs(_maps(mammo_phantom(seed=1)), None)
    assert x.shape == (len(ev.VIEW_FEATURES_V2),)
    assert np.all(x[ev.N_OWN :] == 0.0) and np.any(x[: ev.N_OWN] != 0.0)


def test_identical_breasts_show_no_asymmetry() -> None:
    m = _maps(mammo_phantom(seed=2))
    x = ev.view_inputs(m, m)
    assert np.allclose(x[ev.N_OWN : 2 * ev.N_OWN], 0.0)
    assert abs(_feature(x, "contra_abs_mean")) < 1e-6


def test_a_mass_in_one_breast_stands_out_against_the_other() -> None:
    plain = _maps(mammo_phantom(seed=4))
    mass = _maps(mammo_phantom(seed=4, lesion=(150, 280, 16)))
    with_mass = ev.view_inputs(mass, plain)
    without = ev.view_inputs(plain, plain)
    assert _feature(with_mass, "contra_p99") > _feature(without, "contra_p99") + 0.01
    assert _feature(with_mass, "blob_large_p100_minus_other") > 0.0
    assert _feature(with_mass, "dog_16_p100") > _feature(without, "dog_16_p100")


def test_density_inputs_follow_the_tissue_brightness() -> None:
    img = mammo_phantom(seed=5)
    brighter = np.where(img > 20, np.clip(img.astype(np.int32) + 40, 0, 255), img).astype(np.uint8)
    dark, bright = ev.density_inputs(_maps(img)), ev.density_inputs(_maps(brighter))
    p50 = ev.DENSITY_FEATURES.index("intensity_p50")
    assert dark.shape == (len(ev.DENSITY_FEATURES),)
    assert bright[p50] > dark[p50]
