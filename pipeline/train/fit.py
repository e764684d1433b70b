"""Fitting: the CNN from scratch, the ResNet in two phases, and a warm start from a champion."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipeline.adapters.storage import ObjectStore
from pipeline.files import write_atomic
from pipeline.settings import IMAGENET_WEIGHTS_FILE, TrainConfig
from pipeline.train.inputs import InputSpec, PreparedData, input_spec, make_dataset
from pipeline.train.models import (
    HEAD_LAYER,
    build_augmenter,
    build_cnn,
    build_resnet,
    compile_model,
    unfreeze_top,
)
from pipeline.train.transfer import ResNetParts, compute_activations, repeat_labels, split_resnet

log = logging.getLogger(__name__)

STORE_SCHEME = "store://"


@dataclass
class TrainedModel:
    kind: str
    model: keras.Model
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    images_seen: int = 0
    weights_source: str = "none (trained from scratch)"
    phases: dict[str, float] = field(default_factory=dict)  # seconds per training phase
    epochs: dict[str, int] = field(default_factory=dict)  # epochs run per training phase
    # The 1-based epoch (phases numbered on) whose weights the model kept.
    kept_epoch: int | None = None
    # When training began (Unix seconds): the MLflow run starts here, so its duration is real.
    started_at: float = field(default_factory=time.time)

    def add_phase(self, name: str, seconds: float) -> None:
        self.phases[name] = round(self.phases.get(name, 0.0) + seconds, 1)
        self.seconds += seconds

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.seconds if self.seconds else 0.0


def distribution_strategy(mode: str) -> tf.distribute.Strategy:
    """The strategy `TrainConfig.distribute` asks for. Mirrored over the GPUs, else over the
    logical CPU devices (how the code path is tested without a GPU), reducing on one device
    (NCCL exists only on GPUs)."""
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    if mode == "none" or (mode == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    if gpus:
        return tf.distribute.MirroredStrategy(gpus)
    cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(cpus, tf.distribute.ReductionToOneDevice())


@contextmanager
def distributed(cfg: TrainConfig) -> Iterator[TrainConfig]:
    """Build, compile and fit inside the strategy's scope (its variables are mirrored, and
    `fit` splits each batch across the replicas); the batch size grows with the replicas so
    each device keeps `cfg.batch_size` images. The learning rate is left as configured."""
    strategy = distribution_strategy(cfg.distribute)
    replicas = strategy.num_replicas_in_sync
    with strategy.scope():
        yield cfg.model_copy(update={"batch_size": cfg.batch_size * replicas})


def _datasets(data: PreparedData, cfg: TrainConfig, spec: InputSpec):
    augmenter = build_augmenter(cfg.augment, cfg.seed)
    train = make_dataset(
        data.train.paths, data.train.labels, spec, cfg.batch_size, augmenter, cfg.seed,
        weights=data.train_weight,
    )  # fmt: skip
    val = make_dataset(data.val.paths, data.val.labels, spec, cfg.batch_size)
    return train, val


def _fit(
    model: keras.Model,
    train: tf.data.Dataset | tuple[np.ndarray, ...],
    val: tf.data.Dataset | tuple[np.ndarray, np.ndarray],
    epochs: int,
    cfg: TrainConfig,
    class_weight: dict[int, float] | None,
    trained: TrainedModel,
    phase: str,
    samples: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    keep_best: bool = True,
) -> None:
    """One training phase; appends to the history and timings.

    `keep_best`: early stopping on val AUC, the best epoch's weights restored; else every epoch
    runs and the last one's weights stay. `train` is a dataset of (images, labels[, weights]) or
    arrays (inputs, labels[, weights]), shuffled each epoch. Per-row weights already hold the
    class weight, so `class_weight` is then not applied again (Keras refuses both at once).
    """
    if epochs <= 0:
        return
    stop = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=cfg.patience, restore_best_weights=True
    )
    watchers = [stop, *callbacks] if keep_best else list(callbacks)
    arrays = isinstance(train, tuple)  # else a dataset of batches
    weighted = len(train) == 3 if arrays else len(train.element_spec) == 3
    start = time.perf_counter()
    history = model.fit(
        *(train[:2] if arrays else (train,)),
        sample_weight=train[2] if arrays and weighted else None,
        batch_size=cfg.batch_size if arrays else None,
        validation_data=val,
        epochs=epochs,
        class_weight=None if weighted else class_weight,
        callbacks=watchers,
        shuffle=arrays,  # a tf.data pipeline shuffles itself (and Keras warns if asked)
        verbose=2,
    )
    trained.add_phase(phase, time.perf_counter() - start)
    ran = len(history.history.get("loss", []))
    before = len(trained.history.get("loss", []))
    restored = keep_best and stop.best_weights is not None
    trained.kept_epoch = before + (stop.best_epoch + 1 if restored else ran)
    trained.epochs[phase] = trained.epochs.get(phase, 0) + ran
    trained.images_seen += ran * samples
    for name, values in history.history.items():
        trained.history.setdefault(name, []).extend(float(v) for v in values)


def _fit_images(
    model: keras.Model,
    data: PreparedData,
    cfg: TrainConfig,
    epochs: int,
    trained: TrainedModel,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> None:
    """A phase over decoded (and augmented) images: the CNN, or a ResNet without pretraining."""
    train, val = _datasets(data, cfg, input_spec(model))
    samples = len(data.train.paths)
    _fit(model, train, val, epochs, cfg, data.class_weight, trained, "fit", samples, callbacks)


def train_cnn(
    data: PreparedData, cfg: TrainConfig, callbacks: Sequence[keras.callbacks.Callback] = ()
) -> TrainedModel:
    keras.utils.set_random_seed(cfg.seed)
    with distributed(cfg) as cfg:
        model = build_cnn(cfg, data.prior)
        compile_model(model, cfg.cnn_learning_rate)
        trained = TrainedModel("cnn", model)
        _fit_images(model, data, cfg, cfg.cnn_epochs, trained, callbacks)
    return trained


def resolve_weights(spec: str, store: ObjectStore, cache_dir: Path) -> str | None:
    """The `weights` argument for ResNet50: "imagenet", None, or a local file path."""
    lowered = spec.strip().lower()
    if lowered in ("none", ""):
        return None
    if lowered == "imagenet":
        return "imagenet"
    if spec.startswith(STORE_SCHEME):
        key = spec[len(STORE_SCHEME) :]
        # Fetched every time (the key may point at new weights), written whole or not at all.
        return str(write_atomic(cache_dir / "weights" / Path(key).name, store.get(key)))
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ValueError(
            f"resnet weights {spec!r}: no such file (use imagenet, none, a file or store://KEY)"
        )
    return str(path)


def build_resnet_with_weights(
    cfg: TrainConfig, weights: str | None, prior: float
) -> tuple[keras.Model, str]:
    """Build the ResNet and say which weights it really has; falls back only if allowed."""
    try:
        model = build_resnet(cfg, weights, prior)
    except Exception as exc:  # Keras raises a bare Exception for a failed download
        if weights != "imagenet" or not cfg.resnet_weights_fallback:
            raise RuntimeError(f"could not load ResNet50 weights {weights!r}: {exc}") from exc
        # The URL is in the docs; the cause after it (no network, refused) is what helps.
        reason = re.sub(
            r"https?://\S+?(?=:?(?:\s|$))", "the Keras download", str(exc).splitlines()[0]
        )[:160]
        # Said now, not only in the summary: from scratch it trains for many minutes on a CPU.
        log.warning(
            "ImageNet weights unavailable (%s): the ResNet trains from random weights for %d "
            "epochs; give PNEUMO_TRAIN__RESNET_WEIGHTS=/path/to/%s to fine-tune it instead",
            reason,
            cfg.resnet_scratch_epochs,
            IMAGENET_WEIGHTS_FILE,
        )
        return build_resnet(cfg, None, prior), f"none (imagenet unavailable: {reason})"
    source = {None: "none (trained from scratch)", "imagenet": "imagenet"}.get(
        weights, f"file:{weights}"
    )
    return model, source


def train_resnet(data: PreparedData, cfg: TrainConfig, weights: str | None) -> TrainedModel:
    """Pretrained: head on cached frozen features, then the top blocks. Else: all layers."""
    keras.utils.set_random_seed(cfg.seed)
    with distributed(cfg) as cfg:
        model, source = build_resnet_with_weights(cfg, weights, data.prior)
        trained = TrainedModel("resnet", model, weights_source=source)
        if source.startswith("none"):
            compile_model(model, cfg.resnet_learning_rate)
            _fit_images(model, data, cfg, cfg.resnet_scratch_epochs, trained)
        else:
            fit_pretrained(split_resnet(model, cfg.resnet_unfreeze_blocks), data, cfg, trained)
    return trained


def fit_pretrained(
    parts: ResNetParts,
    data: PreparedData,
    cfg: TrainConfig,
    trained: TrainedModel,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> None:
    """Both phases on activations cached once; `callbacks` watch every epoch (benchmarks)."""
    cached = cache_activations(parts, data, cfg, trained)
    train_head(parts, cached, data, cfg, trained, callbacks)
    train_top(parts, cached, data, cfg, cfg.resnet_finetune_epochs, trained, callbacks)


@dataclass(frozen=True)
class CachedActivations:
    """Activations at the cut: training images (all views, view-major) and validation images."""

    train: np.ndarray
    train_labels: np.ndarray
    val: np.ndarray
    train_weight: np.ndarray | None = None  # per row, as `PreparedData.train_weight`

    def row_weights(self, class_weight: dict[int, float] | None) -> np.ndarray:
        """Each training row's weight: its own if given (class weight included), else its
        class's, else 1."""
        if self.train_weight is not None:
            return self.train_weight
        if class_weight is None:
            return np.ones(len(self.train_labels))
        return np.where(self.train_labels > 0.5, class_weight[1], class_weight[0])

    def training_set(self, inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        """(inputs, labels) or (inputs, labels, weights) for `_fit`, row-aligned with train."""
        rows = (inputs, self.train_labels)
        return rows if self.train_weight is None else (*rows, self.train_weight)


def cache_activations(
    parts: ResNetParts, data: PreparedData, cfg: TrainConfig, trained: TrainedModel
) -> CachedActivations:
    """Run the frozen bottom once per training view and validation image."""
    start = time.perf_counter()
    augmenter = build_augmenter(cfg.augment, cfg.seed) if cfg.resnet_feature_views > 1 else None
    views, crops = cfg.resnet_feature_views, cfg.resnet_view_crops
    train = compute_activations(
        parts.bottom, data.train.paths, cfg.batch_size, augmenter, views, crops
    )
    val = compute_activations(parts.bottom, data.val.paths, cfg.batch_size)
    trained.add_phase("cache", time.perf_counter() - start)
    rows = views + len(crops)
    weight = None if data.train_weight is None else repeat_labels(data.train_weight, rows)
    return CachedActivations(train, repeat_labels(data.train.labels, rows), val, weight)


def train_head(
    parts: ResNetParts,
    cached: CachedActivations,
    data: PreparedData,
    cfg: TrainConfig,
    trained: TrainedModel,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> None:
    """Phase 1: the head alone, on pooled features the frozen top computes once."""
    start = time.perf_counter()
    train = parts.features.predict(cached.train, batch_size=cfg.batch_size, verbose=0)
    val = parts.features.predict(cached.val, batch_size=cfg.batch_size, verbose=0)
    trained.add_phase("features", time.perf_counter() - start)
    if cfg.resnet_head_fit == "logistic":
        start = time.perf_counter()
        weights = cached.row_weights(data.class_weight)
        fit_logistic_head(parts.head, train, cached.train_labels, weights, cfg.resnet_head_c)
        trained.add_phase("head", time.perf_counter() - start)
        return
    compile_model(parts.head, cfg.resnet_learning_rate)
    _fit(
        parts.head,
        cached.training_set(train),
        (val, data.val.labels),
        cfg.resnet_head_epochs,
        cfg,
        data.class_weight,
        trained,
        "head",
        len(train),
        callbacks,
        keep_best=cfg.resnet_keep == "best",
    )


def fit_logistic_head(
    head: keras.Model, features: np.ndarray, labels: np.ndarray, weights: np.ndarray, c: float
) -> None:
    """Solve the head exactly as an L2-regularised logistic regression on standardised
    features, and put the solution in its Dense unit (the standardisation folded in).

    The exact optimum is deterministic and needs no epochs or early stopping, which the
    saturated val AUC could not guide; `c` is scikit-learn's C with weights scaled to mean 1.
    """
    from sklearn.linear_model import LogisticRegression

    mean, std = features.mean(0), features.std(0) + 1e-6
    fitted = LogisticRegression(C=c, max_iter=3000).fit(
        (features - mean) / std, labels, sample_weight=weights / weights.mean()
    )
    kernel = fitted.coef_[0] / std
    bias = fitted.intercept_[0] - kernel @ mean
    head.get_layer(HEAD_LAYER).set_weights(
        [kernel[:, None].astype(np.float32), np.array([bias], np.float32)]
    )


def train_top(
    parts: ResNetParts,
    cached: CachedActivations,
    data: PreparedData,
    cfg: TrainConfig,
    epochs: int,
    trained: TrainedModel,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> None:
    """Phase 2: the blocks above the cut and the head, BatchNormalization frozen, at a low rate."""
    if epochs <= 0 or parts.unfrozen_layers == 0:
        return
    unfreeze_top(trained.model, parts.unfrozen_layers)
    compile_model(parts.top, cfg.resnet_finetune_learning_rate, xla=True)
    _fit(
        parts.top,
        cached.training_set(cached.train),
        (cached.val, data.val.labels),
        epochs,
        cfg,
        data.class_weight,
        trained,
        "fine_tune",
        len(cached.train),
        callbacks,
        keep_best=cfg.resnet_keep == "best",
    )


def fine_tune(
    model: keras.Model,
    source: str,
    data: PreparedData,
    cfg: TrainConfig,
    epochs: int,
    refit_head: bool = True,
) -> TrainedModel:
    """Warm start: a registered ResNet's head fitted again on its own features (`refit_head`),
    then `epochs` of its top blocks, both on cached activations.

    Refitting is what lets local films count: on the site films the refitted head gained AUC on
    patients it never saw, where epochs of the top blocks alone lost it
    (docs/explanation/site-quality.md, retraining).
    """
    keras.utils.set_random_seed(cfg.seed)
    trained = TrainedModel("resnet", model, weights_source=f"warm start from {source}")
    # The registered model was loaded outside any strategy: its variables are not mirrored, so
    # fine-tuning runs on one device.
    parts = split_resnet(model, cfg.resnet_unfreeze_blocks)
    cached = cache_activations(parts, data, cfg, trained)
    if refit_head:
        train_head(parts, cached, data, cfg, trained)
    train_top(parts, cached, data, cfg, epochs, trained)
    return trained
