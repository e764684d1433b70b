"""The intended-use check: the out-of-distribution distance, its cut-off, the image checks."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.data.scope import (
    ScopeModel,
    age_in_years,
    fit_scope,
    image_reasons,
    scope_reasons,
    tag_reasons,
)
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
    cfg = ScopeConfig(components=10, false_flag_rate=0.02)
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


CHILDREN = "(the training films are of children aged 1 to 5)"


@pytest.mark.parametrize(
    ("tags", "reasons"),
    [
        ({}, []),  # JPEG, PNG or a DICOM export without them: nothing to hold against it
        ({"Modality": "CR", "BodyPartExamined": "chest", "ViewPosition": "PA"}, []),
        ({"Modality": "DX", "ViewPosition": "AP", "PatientAge": "018M"}, []),
        ({"Modality": "OT"}, ["Modality OT (expected CR or DX: a radiograph)"]),
        ({"Modality": "CT", "BodyPartExamined": "ABDOMEN"}, [
            "Modality CT (expected CR or DX: a radiograph)",
            "BodyPartExamined ABDOMEN (expected CHEST: a chest film)",
        ]),
        ({"ViewPosition": "LL"}, ["ViewPosition LL (expected PA or AP: a frontal film)"]),
        ({"PatientAge": "045Y"}, [f"PatientAge 045Y {CHILDREN}"]),
        ({"PatientAge": "011M"}, [f"PatientAge 011M {CHILDREN}"]),
        ({"PatientAge": "4 years"}, []),  # not an age string: it says nothing either way
    ],
)  # fmt: skip
def test_dicom_tags_put_a_film_outside_the_intended_use(
    tags: dict[str, str], reasons: list[str]
) -> None:
    assert tag_reasons(tags, ScopeConfig()) == reasons


def test_ages_count_whole_years_and_the_range_is_configurable() -> None:
    assert [age_in_years(a) for a in ("004Y", "071M", "208W", "400D", "12Y")] == [4, 5, 3, 1, None]
    older = ScopeConfig(age_years=(1, 10))
    assert tag_reasons({"PatientAge": "009Y"}, older) == []
    with pytest.raises(ValueError, match="age_years"):
        ScopeConfig(age_years=(5, 1))


def test_tag_findings_join_the_image_reasons() -> None:
    _, reasons = scope_reasons([FILM, FILM], np.zeros((2, 64)), None, [["ViewPosition LL"], []])
    assert reasons == [["outside intended use: ViewPosition LL"], []]
