"""Multiply-add counts of Keras models, for achieved-GFLOP/s figures (convolutions and dense
layers; batch norm, activations and pooling add well under 1 % to a ResNet and are left out)."""

from __future__ import annotations

import math

import keras


def _output_shape(layer: keras.Layer) -> tuple:
    # The first call's output: a layer shared by several part models has one shape in all of them.
    return tuple(layer._inbound_nodes[0].outputs[0].shape)


def forward_flops(model: keras.Model) -> float:
    """FLOPs (2 per multiply-add) of one image's forward pass."""
    return layers_flops(model.layers)


def layers_flops(layers: list[keras.Layer]) -> float:
    """Forward FLOPs of some layers of a model (nested models included) for one image."""
    total = 0.0
    for layer in layers:
        if isinstance(layer, keras.Model):
            total += forward_flops(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            _, height, width, _ = _output_shape(layer)
            total += 2.0 * height * width * math.prod(layer.kernel.shape)
        elif isinstance(layer, keras.layers.Dense):
            total += 2.0 * math.prod(layer.kernel.shape)
    return total


def training_flops(model: keras.Model) -> float:
    """FLOPs of one image's training step: forward, then gradients for inputs and weights.

    The usual estimate: backward costs twice the forward (one product for the gradient of the
    input, one for the kernel's), so a step is 3x the forward of the trained layers.
    """
    return 3.0 * forward_flops(model)
