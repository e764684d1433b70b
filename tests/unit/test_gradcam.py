import numpy as np
import pytest

from pipeline.gradcam import gradcam, overlay
from pipeline.models import build_cnn, build_resnet
from pipeline.settings import TrainConfig

CFG = TrainConfig(image_size=48)


@pytest.mark.parametrize(
    ("build", "informative"),
    [(lambda: build_cnn(CFG), True), (lambda: build_resnet(CFG, None), False)],
)
def test_heatmap_has_image_size_and_unit_range(build, informative: bool) -> None:
    model = build()
    # A non-zero head, so the score depends on the features and gradients are informative.
    head = model.get_layer("pneumonia")
    kernel, bias = head.get_weights()
    head.set_weights([np.random.default_rng(0).normal(size=kernel.shape).astype("float32"), bias])
    image = np.random.default_rng(1).uniform(0, 255, (48, 48, 1)).astype("float32")
    heatmap = gradcam(model, image)
    assert heatmap.shape == (48, 48)
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    # A random ResNet's 2x2 map can weigh out to all-negative, which ReLU zeroes: still valid.
    assert heatmap.max() > 0.0 or not informative
    blended = overlay(image, heatmap)
    assert blended.shape == (48, 48, 3) and blended.dtype == np.uint8
