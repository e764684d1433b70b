"""The intended-use check: the out-of-distribution distance, its cut-off, the image checks."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.monitor.scope import ScopeModel, fit_scope, image_reasons, scope_reasons
from pipeline.settings import ScopeConfig
from tests.conftest import SAMPLE

FILM = sorted((SAMPLE / "test" / "NORMAL").iterdir())[0].read_bytes()


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


MIXING = np.random.default_rng(99).normal(size=(8, 64))


def reference(rows: int, seed: int = 0) -> np.ndarray:
    """Correlated features, as pooled activations are: a few strong axes and noise; one
    population whatever the seed."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, 8)) @ MIXING + 0.3 * rng.normal(size=(rows, 64)) + 5.0


def test_the_cut_off_flags_the_named_share_of_new_reference_like_films() -> None:
    cfg = ScopeConfig(components=10)
    model = fit_scope(reference(600), cfg)
    assert (model.false_flag_rate, model.reference_films) == (0.02, 600)
    assert model.components.shape == (10, 64)
    fresh = model.distances(reference(4000, seed=1))
    # Cross-fitted, so the cut-off is not set on distances the fit made small: new films from
    # the same population are flagged at about the named rate.
    assert 0.01 <= np.mean(fresh > model.cutoff) <= 0.04
    shifted = reference(500, seed=2) + 6 * MIXING[0]  # along a strong axis of the films
    assert np.mean(model.distances(shifted) > model.cutoff) > 0.99


def test_the_stored_distance_gives_the_same_distances() -> None:
    model = fit_scope(reference(200), ScopeConfig(components=20))
    assert model.components.shape[0] == 20  # at most films/4 axes: 200/4 = 50 allows 20
    again = ScopeModel.from_json(model.to_json())
    films = reference(5, seed=3)
    np.testing.assert_allclose(again.distances(films), model.distances(films))
    assert again.cutoff == model.cutoff
    small = fit_scope(reference(40), ScopeConfig(components=50))
    assert small.components.shape[0] == 10  # 40 films: 10 axes, not 50


def test_a_radiograph_passes_the_image_checks_and_colour_or_flat_images_do_not() -> None:
    assert image_reasons(FILM) == []
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    assert image_reasons(png(photo))[0].startswith("a colour image, not a radiograph (colour ")
    flat = np.full((96, 128), 120, np.uint8)
    assert image_reasons(png(flat)) == ["a flat image with nothing on it (spread 0.0 < 10)"]
    gray_as_rgb = np.asarray(Image.open(io.BytesIO(FILM)).convert("RGB"))
    assert image_reasons(png(gray_as_rgb)) == []


def test_reasons_name_the_distance_and_say_outside_intended_use() -> None:
    model = fit_scope(reference(300), ScopeConfig(components=10))
    embeddings = np.stack([reference(1, seed=4)[0], reference(1, seed=5)[0] + 40.0])
    flat = png(np.full((64, 64), 0, np.uint8))
    distances, reasons = scope_reasons([FILM, flat], embeddings, model)
    assert reasons[0] == []
    flat_reason = "outside intended use: a flat image with nothing on it (spread 0.0 < 10)"
    assert reasons[1][0] == flat_reason
    assert reasons[1][1] == (
        f"unlike the training films (distance {distances[1]:.1f} > {model.cutoff:.1f})"
    )
    # A version registered before the check: no distance, the image checks still apply.
    distances, reasons = scope_reasons([FILM, flat], embeddings, None)
    assert np.isnan(distances).all() and reasons[0] == [] and len(reasons[1]) == 1


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_the_false_flag_rate_is_a_share_below_one_half(rate: float) -> None:
    with pytest.raises(ValueError, match="false_flag_rate"):
        ScopeConfig(false_flag_rate=rate)
