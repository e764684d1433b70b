"""Model inputs: one decode function shared by training, batch inference and serving, and the
usable rows of each split with their local files.

Every model takes `[batch, size, size, channels]` float32 in 0..255 and does its own scaling
inside (see `pipeline.train.models`), so nothing outside the saved model can drift between
training and serving. Size and channels are read from the model itself (`input_spec`): a
retrained or served model gets the input it was built for, whatever the current profile says.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from pipeline.adapters.storage import ObjectStore
from pipeline.errors import PneumoError
from pipeline.files import cached_file
from pipeline.settings import TrainConfig

AUTOTUNE = tf.data.AUTOTUNE


@dataclass(frozen=True)
class InputSpec:
    """What a model's input layer takes: square `size` px images with `channels` bands."""

    size: int
    channels: int = 1


def input_spec(model: keras.Model) -> InputSpec:
    """The input a saved model was built for; refuses shapes the shared decode cannot produce."""
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] not in (1, 3):
        raise ValueError(
            f"model {model.name!r} takes input shape {shape}; expected (batch, size, size, 1 or 3)"
        )
    return InputSpec(int(shape[1]), int(shape[3]))


def decode_image(data: tf.Tensor, spec: InputSpec, crop: float = 1.0) -> tf.Tensor:
    """Encoded JPEG/PNG bytes -> `[size, size, channels]` float32 in 0..255.

    Colour files become gray for a 1-band model, gray files are repeated for a 3-band one.
    `crop` < 1 keeps that central fraction of each side before resizing: a training view of
    the film as a tighter collimation would show it (serving always sees the whole film).
    """
    image = tf.io.decode_image(
        data, channels=spec.channels, expand_animations=False, dtype=tf.uint8
    )
    if crop < 1.0:
        image = tf.image.central_crop(image, crop)
    image = tf.image.resize(image, (spec.size, spec.size), antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


class UndecodableImageError(PneumoError, ValueError):
    """Bytes the model's decoder refuses, though they passed the upload check (PIL): a PNG with
    a bad CRC, for one."""


def prepare_image(data: bytes, spec: InputSpec) -> np.ndarray:
    """The model input for one encoded image, as batch inference and serving need it."""
    try:
        return decode_image(tf.constant(data), spec).numpy()
    except tf.errors.InvalidArgumentError as exc:
        # TensorFlow's own words without its op prefix: "Invalid PNG data, size 7828".
        reason = str(exc).rsplit("}}", 1)[-1].strip() or type(exc).__name__
        raise UndecodableImageError(f"not decodable by the model's decoder: {reason}") from None


def local_files(
    store: ObjectStore, keys: list[str], digests: list[str], cache_dir: Path
) -> list[str]:
    """Local paths of stored objects: the store's own file when it has one, else a cached copy.

    A cached copy is checked against the manifest's sha256, so a file cut off by a killed run is
    fetched again instead of being trained on.
    """
    paths = []
    for key, digest in zip(keys, digests, strict=True):
        uri = Path(store.uri(key))
        if uri.is_file():
            paths.append(str(uri))
            continue
        paths.append(str(cached_file(cache_dir / key, digest, lambda key=key: store.get(key))))
    return paths


def usable_rows(
    manifest: pd.DataFrame, split: str, cap: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """Non-quarantined rows of one split, optionally capped (stratified) for smoke runs."""
    rows = manifest[(manifest["split"] == split) & ~manifest["quarantined"]]
    rows = rows.sort_values("path").reset_index(drop=True)
    if cap is not None and len(rows) > cap:
        share = cap / len(rows)
        rows = rows.groupby("label", group_keys=False).apply(
            lambda g: g.sample(n=max(1, round(len(g) * share)), random_state=seed)
        )
        rows = rows.sort_values("path").reset_index(drop=True)
    return rows


def labels_of(rows: pd.DataFrame) -> np.ndarray:
    return (rows["label"] == "PNEUMONIA").to_numpy(dtype=np.float32)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights (`n / (2 * n_class)`), so both classes weigh the same in total."""
    total = len(labels)
    positives = float(labels.sum())
    counts = {0: total - positives, 1: positives}
    return {k: total / (2 * v) if v else 1.0 for k, v in counts.items()}


def make_dataset(
    paths: list[str],
    labels: np.ndarray,
    spec: InputSpec,
    batch_size: int,
    augmenter: keras.Layer | None = None,
    shuffle_seed: int | None = None,
    crop: float = 1.0,
    weights: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Decoded, resized and cached images; shuffled and augmented only for training.

    Batches are (images, labels), or (images, labels, weights) when per-image `weights` are
    given (Keras reads the third element as sample weights)."""
    columns = (paths, labels) if weights is None else (paths, labels, weights)
    dataset = tf.data.Dataset.from_tensor_slices(columns)
    dataset = dataset.map(
        lambda path, *rest: (decode_image(tf.io.read_file(path), spec, crop), *rest),
        num_parallel_calls=AUTOTUNE,
    ).cache()
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if augmenter is not None:
        dataset = dataset.map(
            lambda images, *rest: (augmenter(images, training=True), *rest),
            num_parallel_calls=AUTOTUNE,
        )
    return dataset.prefetch(AUTOTUNE)


@dataclass(frozen=True)
class SplitData:
    rows: pd.DataFrame
    paths: list[str]
    labels: np.ndarray


@dataclass(frozen=True)
class PreparedData:
    train: SplitData
    val: SplitData
    test: SplitData
    class_weight: dict[int, float] | None
    prior: float
    # Films of the new kind that judge (manifest split "site"), when the manifest has them.
    site: SplitData | None = None
    # Per training row: class weight times the local films' weight; None when train holds no
    # labelled local films (then `class_weight` alone applies).
    train_weight: np.ndarray | None = None
    # After `judged_on_site`: the carved test split, kept for a regression check only.
    carved_test: SplitData | None = None

    @property
    def on_site(self) -> bool:
        return self.carved_test is not None

    def judged_on_site(self) -> PreparedData:
        """Judged where the model will work: with site films in the manifest, they become the
        split every evaluation, gate and champion comparison reads (`test`), and the one the
        threshold is chosen on; without, the data as it is."""
        if self.site is None:
            return self
        return replace(self, test=self.site, site=None, carved_test=self.test)


def prepare_data(
    manifest: pd.DataFrame, store: ObjectStore, cfg: TrainConfig, cache_dir: Path
) -> PreparedData:
    """Usable rows of each split with local file paths; fails clearly if a split is unusable."""
    splits = {}
    for name in ("train", "val", "test"):
        rows = usable_rows(manifest, name, cfg.max_images_per_split, cfg.seed)
        labels = labels_of(rows)
        if len(rows) == 0 or len(np.unique(labels)) < 2:
            raise ValueError(
                f"split {name!r} needs images of both classes, has {len(rows)} usable rows"
            )
        paths = local_files(store, list(rows["key"]), list(rows["sha256"]), cache_dir)
        splits[name] = SplitData(rows, paths, labels)
    site = usable_rows(manifest, "site")
    if len(np.unique(labels_of(site))) == 2:  # judging needs both classes
        keys, digests = list(site["key"]), list(site["sha256"])
        splits["site"] = SplitData(
            site, local_files(store, keys, digests, cache_dir), labels_of(site)
        )
    train = splits["train"]
    weights = class_weights(train.labels) if cfg.class_weights else None
    return PreparedData(
        **splits,
        class_weight=weights,
        prior=float(train.labels.mean()),
        train_weight=row_weights(train, weights, cfg.local_weight_share),
    )


def row_weights(
    train: SplitData, weights: dict[int, float] | None, local_share: float
) -> np.ndarray | None:
    """Class weight times origin weight per training row, or None without local films.

    Local films get the weight that makes them `local_share` of the total, or 1 if that is less.
    """
    local = (train.rows.get("origin", pd.Series(index=train.rows.index)) == "labeled").to_numpy()
    if not local.any():
        return None
    per_local = max(1.0, local_share / (1 - local_share) * (~local).sum() / local.sum())
    origin = np.where(local, per_local, 1.0)
    by_class = np.ones(len(local)) if weights is None else np.vectorize(weights.get)(train.labels)
    return (origin * by_class).astype(np.float32)


def predict_files(model: keras.Model, paths: list[str], batch_size: int = 32) -> np.ndarray:
    """PNEUMONIA probabilities for image files, decoded as the model's own input."""
    return predict_outputs(model, paths, batch_size).ravel()


def predict_outputs(model: keras.Model, paths: list[str], batch_size: int = 32) -> np.ndarray:
    """The model's output array (one row per file) for image files."""
    return model.predict(image_batches(paths, input_spec(model), batch_size), verbose=0)


def image_batches(
    paths: list[str], spec: InputSpec, batch_size: int, crop: float = 1.0
) -> tf.data.Dataset:
    """Decoded images alone, in file order, for inference (no labels, shuffling or augmenting);
    `crop` as in `decode_image`."""
    unlabelled = make_dataset(paths, np.zeros(len(paths), np.float32), spec, batch_size, crop=crop)
    return unlabelled.map(lambda images, _: images)
