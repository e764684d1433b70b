"""Score encoded images with a model: probabilities and pooled embeddings in one pass."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import keras
import numpy as np

from pipeline.progress import Progress, chunked, silent
from pipeline.train.inputs import UndecodableImageError, input_spec, prepare_image

EMBEDDING_LAYER = "pool"
# Outside the service nothing else calls the model: no lock to take (nullcontext is reusable).
NO_LOCK: AbstractContextManager = nullcontext()


def embedding_model(model: keras.Model) -> keras.Model:
    """Outputs (probability, pooled last-conv features): both models name that layer `pool`."""
    return keras.Model(model.inputs, [model.outputs[0], model.get_layer(EMBEDDING_LAYER).output])


def probe_images(
    probe: keras.Model,
    images: list[bytes],
    batch_size: int = 32,
    progress: Progress = silent,
    model_lock: AbstractContextManager = NO_LOCK,
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """(probabilities, embeddings, undecodable) for encoded images, via the shared decode.

    Rows are the decodable images in order; `undecodable` maps the index of each image the
    model's decoder refused (a PNG with a bad CRC passes PIL but not TensorFlow) to the reason,
    so a caller rejects it instead of one bad file failing the batch. `probe` is
    `embedding_model(model)`, built once per model: building it per call would re-trace the
    graph on every request. `model_lock` is held around the model call only: decoding runs
    outside it, beside other requests.
    """
    spec = input_spec(probe)
    probabilities, embeddings = [], []
    undecodable: dict[int, str] = {}
    numbered = progress(enumerate(images), len(images), "score")
    for chunk in chunked(numbered, batch_size):
        decoded = []
        for index, data in chunk:
            try:
                decoded.append(prepare_image(data, spec))
            except UndecodableImageError as exc:
                undecodable[index] = str(exc)
        if not decoded:
            continue
        with model_lock:
            probability, embedding = probe.predict_on_batch(np.stack(decoded))
        probabilities.append(np.asarray(probability).ravel())
        embeddings.append(np.asarray(embedding))
    if not probabilities:
        return np.zeros(0), np.zeros((0, 0)), undecodable
    return np.concatenate(probabilities), np.concatenate(embeddings), undecodable
