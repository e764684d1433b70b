import keras
import numpy as np
import pytest

from pipeline.settings import TrainConfig
from pipeline.train.gradcam import gradcam, overlay
from pipeline.train.models import build_cnn, build_resnet

CFG = TrainConfig(image_size=48)


@pytest.mark.parametrize("build", [lambda: build_cnn(CFG), lambda: build_resnet(CFG, None)])
def test_heatmap_has_image_size_and_unit_range(build) -> None:
    keras.utils.set_random_seed(0)
    model = build()
    # Both feature maps come out of a ReLU (>= 0); a positive head kernel makes every channel
    # weight positive, so the map cannot ReLU away to zero and must peak at exactly 1.
    head = model.get_layer("pneumonia")
    kernel, bias = head.get_weights()
    head.set_weights(
        [np.abs(np.random.default_rng(0).normal(size=kernel.shape)).astype("float32"), bias]
    )
    image = np.random.default_rng(1).uniform(0, 255, (48, 48, 1)).astype("float32")
    heatmap = gradcam(model, image)
    assert heatmap.shape == (48, 48)
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert heatmap.max() > 0.5  # normalised to a peak of 1 before the bilinear resize
    blended = overlay(image, heatmap)
    assert blended.shape == (48, 48, 3) and blended.dtype == np.uint8
