"""Grad-CAM (Selvaraju et al. 2017) on a model's `last_conv` feature map, and overlays."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipeline.figures import pyplot, save_figure
from pipeline.train.models import GRADCAM_LAYER, HEAD_LAYER


def gradcam(model: keras.Model, image: np.ndarray) -> np.ndarray:
    """Heatmap in [0, 1] with the image's height and width, for the PNEUMONIA score.

    The score is the logit before the sigmoid, as in the paper: the sigmoid's gradient vanishes
    for confident predictions and would blank the map. Both models end in global average
    pooling, dropout and the `pneumonia` Dense unit, so the logit is recomputed from the
    `last_conv` map with that unit's weights. Channel weights are the spatially averaged
    gradients; the weighted map is ReLU-ed, normalised to a peak of 1 and resized.
    """
    probe = keras.Model(model.inputs, model.get_layer(GRADCAM_LAYER).output)
    head = model.get_layer(HEAD_LAYER)
    batch = tf.convert_to_tensor(image[None].astype(np.float32))
    features = probe(batch, training=False)
    with tf.GradientTape() as tape:
        tape.watch(features)
        pooled = tf.reduce_mean(features, axis=(1, 2))
        logit = tf.matmul(pooled, head.kernel) + head.bias
    grads = tape.gradient(logit, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(features * weights, axis=-1))[0]
    peak = float(tf.reduce_max(cam))
    cam = cam / peak if peak > 0 else cam
    resized = tf.image.resize(cam[..., None], image.shape[:2], method="bilinear")[..., 0]
    return np.clip(resized.numpy(), 0.0, 1.0)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """RGB uint8: the gray image with the heatmap in the `jet` colour map on top."""
    from matplotlib import colormaps

    gray = np.repeat(np.clip(image[..., :1], 0, 255) / 255.0, 3, axis=-1)
    colour = colormaps["jet"](heatmap)[..., :3]
    return (255 * ((1 - alpha) * gray + alpha * colour)).astype(np.uint8)


def plot_gradcam_grid(
    model: keras.Model,
    images: np.ndarray,
    captions: list[str],
    out: Path,
) -> Path:
    """One column per image: overlay with its caption (label, probability, right/wrong)."""
    fig, axes = pyplot().subplots(1, len(images), figsize=(2.6 * len(images), 3.0), squeeze=False)
    for ax, image, caption in zip(axes[0], images, captions, strict=True):
        ax.imshow(overlay(image, gradcam(model, image)))
        ax.set_title(caption, fontsize=7)
        ax.axis("off")
    return save_figure(fig, out)
