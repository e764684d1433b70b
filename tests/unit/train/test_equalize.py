"""The per-film intensity normalisation layer: what it computes, and that it is the same
computation in training, in `predict` and after the model is saved and loaded (what the
registry, batch inference and the service run)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from pipeline.layers import CUSTOM_OBJECTS, EqualizeHistogram
from pipeline.settings import TrainConfig
from pipeline.train.inputs import InputSpec, prepare_image
from pipeline.train.models import build_cnn, build_resnet
from tests.conftest import SAMPLE


def film(seed: int = 0, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(40, 200, (1, size, size, 1)).astype(np.float32)


def test_equalised_films_span_the_range_and_keep_the_order_of_levels() -> None:
    x = film()
    y = EqualizeHistogram()(x).numpy()
    assert y.min() == 0.0 and y.max() == 255.0
    order = np.argsort(x.ravel(), kind="stable")
    assert np.all(np.diff(y.ravel()[order]) >= 0)  # a brighter pixel never maps darker


def test_exposure_and_contrast_changes_are_removed() -> None:
    x = film(1)
    darker_flatter = np.round(x * 0.5 + 20)  # monotone: same ranks, other levels
    a, b = EqualizeHistogram()(np.concatenate([x, darker_flatter])).numpy()
    # Levels merged by the halving leave small steps; the raw films differ by ~40 on average.
    assert np.abs(a - b).mean() < 3.0 and np.abs(x - darker_flatter).mean() > 30


def test_a_flat_film_and_each_film_of_a_batch_on_its_own() -> None:
    flat = np.full((1, 8, 8, 1), 77.0, np.float32)
    assert np.all(EqualizeHistogram()(flat).numpy() == 0.0)
    batch = np.concatenate([film(2), film(3)])
    together = EqualizeHistogram()(batch).numpy()
    alone = np.concatenate([EqualizeHistogram()(batch[i : i + 1]).numpy() for i in range(2)])
    np.testing.assert_array_equal(together, alone)


def test_training_predict_and_a_loaded_model_see_the_same_equalised_film(tmp_path: Path) -> None:
    cfg = TrainConfig(image_size=32, cnn_intensity_norm="equalize")
    model = build_cnn(cfg)
    probe = keras.Model(model.inputs, model.get_layer("equalize").output)
    real = sorted((SAMPLE / "test" / "NORMAL").iterdir())[0].read_bytes()
    batch = prepare_image(real, InputSpec(32))[None]
    in_training = probe(batch, training=True).numpy()
    predicted = probe.predict(batch, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS)
    reloaded = keras.Model(loaded.inputs, loaded.get_layer("equalize").output).predict(
        batch, verbose=0
    )
    np.testing.assert_array_equal(in_training, predicted)
    np.testing.assert_array_equal(predicted, reloaded)
    np.testing.assert_allclose(model.predict(batch, verbose=0), loaded.predict(batch, verbose=0))


@pytest.mark.parametrize("norm", ["none", "equalize"])
def test_the_setting_decides_whether_the_layer_is_there(norm: str) -> None:
    cnn = build_cnn(TrainConfig(image_size=32, cnn_intensity_norm=norm))
    assert ("equalize" in {layer.name for layer in cnn.layers}) == (norm == "equalize")
    resnet = build_resnet(TrainConfig(image_size=32, resnet_intensity_norm=norm), None)
    assert ("equalize" in {layer.name for layer in resnet.layers}) == (norm == "equalize")


def test_by_default_only_the_resnet_equalises() -> None:
    cfg = TrainConfig(image_size=32)
    assert "equalize" in {layer.name for layer in build_resnet(cfg, None).layers}
    assert "equalize" not in {layer.name for layer in build_cnn(cfg).layers}
