"""ResNet50 transfer learning sized for a CPU: the frozen part of the network runs once per image.

Fitting the whole model re-runs the frozen ResNet layers forward on every image in every epoch,
although their output never changes. So the ResNet is cut at a residual-block boundary ("the cut"):

- `bottom` (image -> activations at the cut) stays frozen and runs once per image and view;
- phase 1 trains the head on pooled features computed once from those activations;
- phase 2 unfreezes the blocks above the cut and trains them and the head on the cached
  activations, so only the unfrozen blocks run forward and backward.

Every part shares its layers with the full model, so training a part trains the full model: no
weights are copied back. The base always runs in inference mode (`training=False`), so
BatchNormalization keeps its ImageNet statistics, as in the full model.
Augmentation becomes a fixed set of views per image, made before caching: central crops (the
film as a tighter collimation shows it) and, if asked, randomly augmented copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from pipeline.train.inputs import AUTOTUNE, image_batches, input_spec
from pipeline.train.models import BASE_LAYER, CONV4_OUT, HEAD_LAYER, pool_maps

# The output layer of every residual block of Keras' ResNet50, bottom to top.
RESNET_BLOCKS = tuple(
    f"conv{stage}_block{block}_out"
    for stage, blocks in ((2, 3), (3, 4), (4, 6), (5, 3))
    for block in range(1, blocks + 1)
)


def cut_layer(unfrozen_blocks: int) -> str:
    """The layer whose output feeds the lowest unfrozen block (0 blocks: the base's output)."""
    if not 0 <= unfrozen_blocks < len(RESNET_BLOCKS):
        raise ValueError(
            f"unfrozen blocks must be 0..{len(RESNET_BLOCKS) - 1}, got {unfrozen_blocks}"
        )
    return RESNET_BLOCKS[-1 - unfrozen_blocks]


@dataclass(frozen=True)
class ResNetParts:
    """Views of one full ResNet model that share its layers (and so its weights)."""

    bottom: keras.Model  # image -> activations at the cut; frozen, inference mode
    top: keras.Model  # activations at the cut -> probability: what phase 2 trains
    features: keras.Model  # activations at the cut -> pooled features (top blocks frozen)
    head: keras.Model  # pooled features -> probability: what phase 1 trains
    unfrozen_layers: int  # base layers above the cut


def split_resnet(model: keras.Model, unfrozen_blocks: int) -> ResNetParts:
    """Cut a model built by `build_resnet` below its top `unfrozen_blocks` residual blocks.

    A base that also outputs conv4's map (head features "conv4+conv5") needs the cut at or below
    that map, so that the cached activations yield it.
    """
    base = model.get_layer(BASE_LAYER)
    cut = base.get_layer(cut_layer(unfrozen_blocks))
    above_cut = len(base.layers) - 1 - base.layers.index(cut)
    maps = list(base.outputs)
    if len(maps) > 1 and unfrozen_blocks < RESNET_BLOCKS[::-1].index(CONV4_OUT):
        raise ValueError(
            f"the head reads conv4's pooled map, which lies below a cut under the top "
            f"{unfrozen_blocks} blocks: unfreeze at least {RESNET_BLOCKS[::-1].index(CONV4_OUT)} "
            "blocks, or use resnet_head_features conv5"
        )
    image = model.inputs[0]
    centred = model.get_layer("imagenet_centre").output
    below = keras.Model(base.inputs, cut.output, name="resnet_bottom")
    bottom = keras.Model(image, below(centred, training=False), name="bottom")

    activations = keras.Input(cut.output.shape[1:], name="activations")
    if above_cut:
        # A map that is the cut itself is the cached activations, not an output of the top.
        upper_maps = [m for m in maps if m is not cut.output]
        upper = keras.Model(cut.output, upper_maps, name="resnet_top")
        result = upper(activations, training=False)
        mapped = iter(result if isinstance(result, list | tuple) else [result])
        outputs = [activations if m is cut.output else next(mapped) for m in maps]
    else:
        outputs = [activations]
    pooled = pool_maps(outputs)
    features = keras.Model(activations, pooled, name="features")
    head_input = keras.Input(pooled.shape[1:], name="pooled")
    head = keras.Model(head_input, _apply_head(model, head_input), name="head")
    top = keras.Model(activations, _apply_head(model, pooled), name="top")
    return ResNetParts(bottom, top, features, head, above_cut)


def _apply_head(model: keras.Model, pooled: keras.KerasTensor) -> keras.KerasTensor:
    return model.get_layer(HEAD_LAYER)(model.get_layer("head_dropout")(pooled))


def compute_activations(
    bottom: keras.Model,
    paths: list[str],
    batch_size: int,
    augmenter: keras.Layer | None = None,
    views: int = 1,
    crops: Sequence[float] = (),
) -> np.ndarray:
    """Activations at the cut for every image: the original first, then one central crop per
    `crops` entry, then `views - 1` augmented.

    Shape `[(views + len(crops)) * len(paths), ...]`, view-major: row `v * len(paths) + i` is
    view v of image i.
    """
    spec = input_spec(bottom)
    images = image_batches(paths, spec, batch_size)
    passes = [images, *(image_batches(paths, spec, batch_size, crop) for crop in crops)]
    if augmenter is not None:
        augmented = images.map(lambda x: augmenter(x, training=True), num_parallel_calls=AUTOTUNE)
        passes += [augmented] * (views - 1)
    run = tf.function(lambda x: bottom(x, training=False), reduce_retracing=True)
    return np.concatenate([run(batch).numpy() for dataset in passes for batch in dataset])


def repeat_labels(labels: np.ndarray, views: int) -> np.ndarray:
    """Labels aligned with `compute_activations`' view-major rows."""
    return np.tile(labels, views)
