from pathlib import Path

import keras
import numpy as np
import pytest

from pipeline.settings import AugmentConfig, TrainConfig
from pipeline.train.models import (
    BASE_LAYER,
    GRADCAM_LAYER,
    build_augmenter,
    build_cnn,
    build_resnet,
    inference_copy,
    unfreeze_top,
)

CFG = TrainConfig(image_size=32)


def layer_types(model: keras.Model) -> set[str]:
    return {type(layer).__name__ for layer in model.layers}


def test_cnn_has_the_required_layers_and_predicts_the_prior_untrained() -> None:
    model = build_cnn(CFG, prior=0.7)
    assert model.output_shape == (None, 1)
    assert model.input_shape == (None, 32, 32, 1)
    assert {"Conv2D", "MaxPooling2D", "Dropout", "BatchNormalization"} <= layer_types(model)
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(model.predict(images, verbose=0).ravel(), 0.7, atol=1e-5)
    assert model.get_layer(GRADCAM_LAYER).output.shape[-1] == 128


def test_resnet_from_scratch_trains_every_layer() -> None:
    model = build_resnet(CFG, weights=None, prior=0.5)
    assert model.output_shape == (None, 1)
    assert model.get_layer(BASE_LAYER).trainable


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    """A tiny saved base: ResNet50 weights written locally, standing in for ImageNet's."""
    path = tmp_path_factory.mktemp("weights") / "resnet50_notop.weights.h5"
    keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    ).save_weights(path)
    return path


def test_pretrained_base_is_frozen_then_top_layers_unfreeze_without_batchnorm(
    weights_file: Path,
) -> None:
    model = build_resnet(CFG, weights=str(weights_file), prior=0.5)
    base = model.get_layer(BASE_LAYER)
    assert not base.trainable
    assert {w.name for w in model.trainable_weights} == {"kernel", "bias"}  # the head only
    trainable = unfreeze_top(model, 10)
    top = base.layers[-10:]
    assert trainable == sum(
        bool(layer.weights) and type(layer).__name__ == "Conv2D" for layer in top
    )
    assert all(not layer.trainable for layer in base.layers[:-10])
    bn = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bn and all(not layer.trainable for layer in bn)


def test_inference_copy_shares_weights_without_optimizer() -> None:
    model = build_cnn(CFG)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    copy = inference_copy(model)
    assert getattr(copy, "optimizer", None) is None
    assert all(
        np.array_equal(a, b) for a, b in zip(copy.get_weights(), model.get_weights(), strict=True)
    )


def test_flip_is_opt_in() -> None:
    assert "RandomFlip" not in layer_types(build_augmenter(AugmentConfig(), seed=0))
    assert "RandomFlip" in layer_types(build_augmenter(AugmentConfig(flip=True), seed=0))
