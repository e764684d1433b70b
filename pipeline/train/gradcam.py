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
    `last_conv` map with that unit's weights for it. Channel weights are the spatially averaged
    gradients; the weighted map is ReLU-ed, normalised to a peak of 1 and resized.
    """
    probe = keras.Model(model.inputs, model.get_layer(GRADCAM_LAYER).output)
    head = model.get_layer(HEAD_LAYER)
    batch = tf.convert_to_tensor(image[None].astype(np.float32))
    features = probe(batch, training=False)
    with tf.GradientTape() as tape:
        tape.watch(features)
        pooled = tf.reduce_mean(features, axis=(1, 2))
        # A head that also reads conv4's pooled map has those rows after the last map's: the
        # map shows the last map's share of the logit (conv4's share does not pass through it).
        logit = tf.matmul(pooled, head.kernel[: features.shape[-1]]) + head.bias
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


def overlay_film(data: bytes, heatmap: np.ndarray, max_side: int) -> np.ndarray:
    """RGB uint8: the encoded film, decoded at most `max_side` px on its longest side (reduced
    while decoding, for JPEG), with `heatmap` spread over it by `overlay`."""
    import io

    from PIL import Image

    film = Image.open(io.BytesIO(data))
    film.draft("L", (max_side, max_side))
    film = film.convert("L")
    film.thumbnail((max_side, max_side))
    spread = Image.fromarray((heatmap * 255).astype(np.uint8)).resize(film.size, Image.BILINEAR)
    return overlay(np.asarray(film, dtype=np.float32)[..., None], np.asarray(spread) / 255.0)


def plot_gradcam_grid(
    model: keras.Model,
    images: np.ndarray,
    captions: list[str],
    out: Path,
) -> Path:
    """One column per image: the X-ray, then its overlay, captioned; one shared colour bar.

    A map that is zero everywhere (the score does not rise with any region) says so instead of
    showing a plain image that reads like "no finding".
    """
    plt = pyplot()
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable

    count = len(images)
    fig, axes = plt.subplots(
        2, count, figsize=(2.4 * count + 0.8, 5.4), squeeze=False, layout="constrained"
    )
    for column, (image, caption) in enumerate(zip(images, captions, strict=True)):
        heatmap = gradcam(model, image)
        axes[0, column].imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
        axes[0, column].set_title(caption, fontsize=7)
        axes[1, column].imshow(overlay(image, heatmap))
        if not heatmap.max() > 0:
            note = "empty map: no region raises\nthe PNEUMONIA score"
            axes[1, column].set_title(note, fontsize=7)
        for ax in axes[:, column]:
            ax.axis("off")
    bar = fig.colorbar(ScalarMappable(cmap=colormaps["jet"]), ax=axes[1, :].tolist(), shrink=0.8)
    bar.set_label("Grad-CAM (share of the peak)", fontsize=7)
    fig.suptitle("Grad-CAM for the PNEUMONIA score: image (top), map over it (bottom)", fontsize=9)
    return save_figure(fig, out)
