"""Offline, `imagenet` falls back to random weights only where allowed, and says so at once."""

from __future__ import annotations

import logging

import pytest

from pipeline.settings import TrainConfig
from pipeline.train import fit

# What keras.utils.get_file raises when the download fails (a bare Exception).
OFFLINE = Exception(
    "URL fetch failure on https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
    "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5: None -- [Errno -3] Temporary "
    "failure in name resolution"
)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(cfg, weights, prior):
        if weights == "imagenet":
            raise OFFLINE
        return f"model with weights {weights}"

    monkeypatch.setattr(fit, "build_resnet", build)


def test_offline_imagenet_falls_back_and_says_why_and_how(offline, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.train.fit"):
        model, source = fit.build_resnet_with_weights(TrainConfig(), "imagenet", 0.6)
    assert model == "model with weights None"
    assert source == (
        "none (imagenet unavailable: URL fetch failure on the Keras download: None -- "
        "[Errno -3] Temporary failure in name resolution)"
    )
    (warning,) = caplog.messages
    assert "trains from random weights for 6 epochs" in warning
    assert "PNEUMO_TRAIN__RESNET_WEIGHTS=/path/to/resnet50_weights_tf_dim_ordering" in warning


def test_without_fallback_a_failed_download_fails_the_run(offline) -> None:
    with pytest.raises(RuntimeError, match="could not load ResNet50 weights 'imagenet'"):
        fit.build_resnet_with_weights(TrainConfig(resnet_weights_fallback=False), "imagenet", 0.6)
