"""Score encoded images with a model: probabilities and pooled embeddings in one pass."""

from __future__ import annotations

import keras
import numpy as np

from pipeline.progress import Progress, chunked, silent
from pipeline.train.inputs import input_spec, prepare_image

EMBEDDING_LAYER = "pool"


def embedding_model(model: keras.Model) -> keras.Model:
    """Outputs (probability, pooled last-conv features): both models name that layer `pool`."""
    return keras.Model(model.inputs, [model.outputs[0], model.get_layer(EMBEDDING_LAYER).output])


def probe_images(
    probe: keras.Model, images: list[bytes], batch_size: int = 32, progress: Progress = silent
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities [n], embeddings [n, d]) for encoded images, via the shared decode.

    `probe` is `embedding_model(model)`, built once per model: building it per call would
    re-trace the graph on every request.
    """
    spec = input_spec(probe)
    probabilities, embeddings = [], []
    for chunk in chunked(progress(images, len(images), "score"), batch_size):
        batch = np.stack([prepare_image(data, spec) for data in chunk])
        probability, embedding = probe.predict_on_batch(batch)
        probabilities.append(np.asarray(probability).ravel())
        embeddings.append(np.asarray(embedding))
    if not probabilities:
        return np.zeros(0), np.zeros((0, 0))
    return np.concatenate(probabilities), np.concatenate(embeddings)
