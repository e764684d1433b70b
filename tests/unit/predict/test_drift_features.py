"""Per-image drift features and the stored PCA projection."""

import numpy as np
import pytest

from pipeline.data.shifts import shift_image
from pipeline.predict.drift_features import (
    Projection,
    fit_projection,
    image_features,
)
from tests.conftest import SAMPLE

XRAY = sorted((SAMPLE / "test" / "NORMAL").iterdir())[0].read_bytes()


def test_features_react_to_blur_and_contrast() -> None:
    base = image_features(XRAY)
    assert base["width"] == 224 and base["aspect_ratio"] == pytest.approx(
        base["width"] / base["height"]
    )
    assert image_features(shift_image(XRAY, "blur"))["sharpness"] < base["sharpness"] / 2
    assert image_features(shift_image(XRAY, "contrast"))["contrast"] < base["contrast"] / 2
    assert 0 < base["entropy"] <= 8


def test_film_handling_shifts_scale_with_strength() -> None:
    base = image_features(XRAY)
    inverted = image_features(shift_image(XRAY, "inverted"))
    assert inverted["mean"] == pytest.approx(255 - base["mean"], abs=3)
    half = image_features(shift_image(XRAY, "contrast", strength=0.5))["contrast"]
    full = image_features(shift_image(XRAY, "contrast", strength=1.0))["contrast"]
    assert full < half < base["contrast"]
    for kind in ("rotated", "cropped"):
        shifted = image_features(shift_image(XRAY, kind))
        assert shifted["width"] == base["width"]  # same size: only the content moved
        assert shifted["mean"] != pytest.approx(base["mean"], abs=0.5)


def test_polarity_tells_every_sample_film_from_its_inverted_copy() -> None:
    # Every real film of the bundled sample (826, all splits), as published and inverted.
    films = sorted(SAMPLE.rglob("*.jpeg"))
    assert len(films) > 800
    for path in films:
        data = path.read_bytes()
        assert image_features(data)["polarity"] > 0, path.name
        assert image_features(shift_image(data, "inverted"))["polarity"] < 0, path.name


def test_projection_round_trips_through_json() -> None:
    embeddings = np.random.default_rng(0).normal(size=(40, 16))
    projection = fit_projection(embeddings)
    again = Projection.from_json(projection.to_json())
    np.testing.assert_allclose(again.transform(embeddings), projection.transform(embeddings))
    assert projection.transform(embeddings).shape == (40, 5)
