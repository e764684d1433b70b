"""Custom Keras layers that saved models contain, and what loading such a model needs.

Kept below every stage (the registry adapter loads models with them), and imported only by code
that builds or loads models, so the CLI's light commands never import TensorFlow.
"""

from __future__ import annotations

import keras
import tensorflow as tf

LEVELS = 256


class EqualizeHistogram(keras.layers.Layer):
    """Per-film histogram equalisation of gray 0..255 input, inside the model.

    Films of a later period at the same hospital differ in exposure and contrast from the
    training films; mapping every film through its own cumulative histogram removes most of that
    before any learned layer sees it (site-set AUC of a linear probe on frozen ImageNet
    features: 0.949 -> 0.957 at 128 px, docs/explanation/site-quality.md). Being a layer,
    training, batch inference and serving cannot apply it differently. It has no weights and
    passes no gradient to its input (nothing below it trains).
    """

    def call(self, images: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(images)
        levels = tf.cast(tf.clip_by_value(tf.round(images), 0, LEVELS - 1), tf.int32)
        flat = tf.reshape(levels, (shape[0], -1))
        counts = tf.math.bincount(flat, minlength=LEVELS, maxlength=LEVELS, axis=-1)
        cdf = tf.cast(tf.cumsum(counts, axis=-1), tf.float32)
        # The darkest level present maps to 0 and the brightest to 255 (the classic
        # equalisation formula); a film of one level stays 0 instead of dividing by zero.
        lowest = tf.reduce_min(tf.where(counts > 0, cdf, cdf[:, -1:]), axis=-1, keepdims=True)
        span = tf.maximum(cdf[:, -1:] - lowest, 1.0)
        mapping = tf.clip_by_value((cdf - lowest) / span, 0.0, 1.0) * (LEVELS - 1)
        equalised = tf.gather(mapping, flat, batch_dims=1)
        return tf.reshape(equalised, shape)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape


# What `keras.models.load_model` needs for every model the project saves.
CUSTOM_OBJECTS = {"EqualizeHistogram": EqualizeHistogram}
