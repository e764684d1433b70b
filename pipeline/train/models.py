"""Model builders. Both take `[size, size, 1]` grayscale in 0..255 and scale it themselves.

Each model names the layer Grad-CAM reads (`GRADCAM_LAYER`): the last convolutional feature map.
"""

from __future__ import annotations

import keras
import numpy as np

from pipeline.layers import EqualizeHistogram
from pipeline.settings import AugmentConfig, TrainConfig

GRADCAM_LAYER = "last_conv"
BASE_LAYER = "resnet50_base"
HEAD_LAYER = "pneumonia"
# The pooled features the head reads (drift and the shadow tests read them as the embedding).
POOL_LAYER = "pool"
# ResNet50's conv4 output, pooled beside conv5's when `resnet_head_features` asks for it.
CONV4_OUT = "conv4_block6_out"
# ResNet50's "caffe" preprocessing: BGR means. The input is gray replicated to three channels, so
# channel order cannot matter and the plain means suffice.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


def build_augmenter(cfg: AugmentConfig, seed: int) -> keras.Sequential:
    """Random rotation, zoom, shift (and flip only if asked: see AugmentConfig)."""
    layers: list[keras.Layer] = []
    if cfg.rotation:
        layers.append(keras.layers.RandomRotation(cfg.rotation, fill_mode="constant", seed=seed))
    if cfg.zoom:
        layers.append(keras.layers.RandomZoom(cfg.zoom, fill_mode="constant", seed=seed))
    if cfg.shift:
        layers.append(
            keras.layers.RandomTranslation(cfg.shift, cfg.shift, fill_mode="constant", seed=seed)
        )
    if cfg.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    return keras.Sequential(layers, name="augment")


def normalise_intensity(inputs: keras.KerasTensor, mode: str) -> keras.KerasTensor:
    """The film as the learned layers see it: equalised per film, or as it is ("none")."""
    if mode == "equalize":
        return EqualizeHistogram(name="equalize")(inputs)
    return inputs


def pool_maps(maps: list[keras.KerasTensor]) -> keras.KerasTensor:
    """Global average pooling of each feature map, side by side (the last stage's first)."""
    pooled = [keras.layers.GlobalAveragePooling2D()(m) for m in maps]
    if len(pooled) == 1:
        return keras.layers.Identity(name=POOL_LAYER)(pooled[0])
    return keras.layers.Concatenate(name=POOL_LAYER)(pooled)


def _head(pooled: keras.KerasTensor, prior: float, dropout: float) -> keras.KerasTensor:
    """Dropout, one sigmoid unit starting at the class prior.

    A zero kernel and a log-odds bias make an untrained model predict the training prevalence
    for every image instead of noise: a well-defined baseline (AUC exactly 0.5).
    """
    x = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
    prior = min(max(prior, 1e-3), 1 - 1e-3)
    return keras.layers.Dense(
        1,
        activation="sigmoid",
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(float(np.log(prior / (1 - prior)))),
        name=HEAD_LAYER,
    )(x)


def build_cnn(cfg: TrainConfig, prior: float = 0.5) -> keras.Model:
    """A from-scratch CNN: four Conv-MaxPool-BN-ReLU blocks with growing width and dropout.

    Pooling comes before BatchNormalization and ReLU: max-pooling commutes with ReLU (and with
    BN for a positive scale), so the block computes nearly the same function while BN and ReLU,
    memory-bound on a CPU, touch a quarter of the values: training ran about 2x faster at 128 px
    on 2 cores. The last block keeps 128 filters (not 256): another 1.5x, which lets the
    `cpu-small` run train both models on the full train split in about 20 minutes.
    """
    inputs = keras.Input((cfg.image_size, cfg.image_size, 1), name="image")
    x = keras.layers.Rescaling(1.0 / 255, name="scale")(
        normalise_intensity(inputs, cfg.cnn_intensity_norm)
    )
    for block, filters in enumerate((32, 64, 128, 128)):
        last = block == 3
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        if not last:
            x = keras.layers.MaxPooling2D()(x)
        # momentum 0.9: moving statistics must settle within the few steps a small dataset gives
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.Activation("relu", name=GRADCAM_LAYER if last else None)(x)
        if not last:
            x = keras.layers.Dropout(0.1 * (block + 1))(x)
    return keras.Model(inputs, _head(pool_maps([x]), prior, 0.4), name="pneumonia_cnn")


def build_resnet(cfg: TrainConfig, weights: str | None, prior: float = 0.5) -> keras.Model:
    """ResNet50 base (`weights`: "imagenet", a weights file path, or None) with a new head.

    With pretrained weights the base runs in inference mode (`training=False`), so its
    BatchNormalization statistics stay those it was trained with, also after unfreezing.
    With `resnet_head_features` "conv4+conv5" the base also outputs conv4's map, and the head
    reads both pooled: mid-level features transferred better to the site's films.
    """
    size = cfg.image_size
    inputs = keras.Input((size, size, 1), name="image")
    gray = normalise_intensity(inputs, cfg.resnet_intensity_norm)
    rgb = keras.layers.Concatenate(name="gray_to_rgb")([gray, gray, gray])
    offsets = [-m for m in IMAGENET_BGR_MEAN]
    x = keras.layers.Rescaling(1.0, offset=offsets, name="imagenet_centre")(rgb)
    resnet = keras.applications.ResNet50(
        include_top=False, weights=weights, input_shape=(size, size, 3)
    )
    outputs = [resnet.output]
    if cfg.resnet_head_features == "conv4+conv5":
        outputs.append(resnet.get_layer(CONV4_OUT).output)
    base = keras.Model(resnet.inputs, outputs, name=BASE_LAYER)
    pretrained = weights is not None
    base.trainable = not pretrained
    result = base(x, training=False) if pretrained else base(x)
    maps = result if isinstance(result, list | tuple) else [result]
    # An identity layer in the outer graph: a nested model's `.output` is its inner tensor,
    # which Grad-CAM cannot connect to the outer input.
    last = keras.layers.Identity(name=GRADCAM_LAYER)(maps[0])
    pooled = pool_maps([last, *maps[1:]])
    return keras.Model(inputs, _head(pooled, prior, 0.3), name="pneumonia_resnet")


def unfreeze_top(model: keras.Model, layers: int) -> int:
    """Make the top `layers` of the ResNet base trainable, BatchNormalization excepted.

    Returns the number of trainable layers in the base afterwards.
    """
    base = model.get_layer(BASE_LAYER)
    base.trainable = True
    cut = len(base.layers) - layers
    for index, layer in enumerate(base.layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = index >= cut and not is_bn
    return sum(layer.trainable and bool(layer.weights) for layer in base.layers)


def compile_model(model: keras.Model, learning_rate: float, xla: bool = False) -> None:
    """Adam, binary cross-entropy, and the metrics early stopping and the reports read.

    `xla`: compile the training step with XLA. On this CPU that made fine-tuning the top blocks
    on cached activations ~4x faster (TensorFlow's own kernels for the gradients of small-spatial
    convolutions are slow), but a full-size ResNet or the CNN no faster.
    """
    model.compile(
        jit_compile=xla,
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc"),
            keras.metrics.Recall(name="recall"),
        ],
    )


def inference_copy(model: keras.Model) -> keras.Model:
    """The same layers and weights without optimizer state, for the registry (~1/3 the size)."""
    return keras.Model(model.inputs, model.outputs, name=model.name)
