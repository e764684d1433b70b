"""Fitting: the CNN from scratch, the ResNet in two phases, and a warm start from a champion."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import keras

from pipeline.adapters.storage import ObjectStore
from pipeline.settings import TrainConfig
from pipeline.train.inputs import PreparedData, make_dataset
from pipeline.train.models import (
    build_augmenter,
    build_cnn,
    build_resnet,
    compile_model,
    unfreeze_top,
)

STORE_SCHEME = "store://"


@dataclass
class TrainedModel:
    kind: str
    model: keras.Model
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    images_seen: int = 0
    weights_source: str = "none (trained from scratch)"

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.seconds if self.seconds else 0.0


def _datasets(data: PreparedData, cfg: TrainConfig, size: int):
    augmenter = build_augmenter(cfg.augment, cfg.seed)
    train = make_dataset(
        data.train.paths, data.train.labels, size, cfg.batch_size, augmenter, cfg.seed
    )
    val = make_dataset(data.val.paths, data.val.labels, size, cfg.batch_size)
    return train, val


def _fit(
    model: keras.Model, data: PreparedData, cfg: TrainConfig, epochs: int, trained: TrainedModel
) -> None:
    """One training phase with early stopping on val AUC; appends to the history."""
    if epochs <= 0:
        return
    train, val = _datasets(data, cfg, int(model.inputs[0].shape[1]))
    stop = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=cfg.patience, restore_best_weights=True
    )
    start = time.perf_counter()
    history = model.fit(
        train,
        validation_data=val,
        epochs=epochs,
        class_weight=data.class_weight,
        callbacks=[stop],
        verbose=2,
    )
    trained.seconds += time.perf_counter() - start
    ran = len(history.history.get("loss", []))
    trained.images_seen += ran * len(data.train.paths)
    for name, values in history.history.items():
        trained.history.setdefault(name, []).extend(float(v) for v in values)


def train_cnn(data: PreparedData, cfg: TrainConfig) -> TrainedModel:
    keras.utils.set_random_seed(cfg.seed)
    model = build_cnn(cfg, data.prior)
    compile_model(model, cfg.cnn_learning_rate)
    trained = TrainedModel("cnn", model)
    _fit(model, data, cfg, cfg.cnn_epochs, trained)
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
        target = cache_dir / "weights" / Path(key).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(store.get(key))
        return str(target)
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
        reason = str(exc).splitlines()[0][:120]
        return build_resnet(cfg, None, prior), f"none (imagenet unavailable: {reason})"
    source = {None: "none (trained from scratch)", "imagenet": "imagenet"}.get(
        weights, f"file:{weights}"
    )
    return model, source


def train_resnet(data: PreparedData, cfg: TrainConfig, weights: str | None) -> TrainedModel:
    """Pretrained: head on a frozen base, then the top layers at a lower rate. Else: all layers."""
    keras.utils.set_random_seed(cfg.seed)
    model, source = build_resnet_with_weights(cfg, weights, data.prior)
    trained = TrainedModel("resnet", model, weights_source=source)
    if source.startswith("none"):
        compile_model(model, cfg.resnet_learning_rate)
        _fit(model, data, cfg, cfg.resnet_head_epochs + cfg.resnet_finetune_epochs, trained)
        return trained
    compile_model(model, cfg.resnet_learning_rate)
    _fit(model, data, cfg, cfg.resnet_head_epochs, trained)
    unfreeze_top(model, cfg.resnet_unfreeze_layers)
    compile_model(model, cfg.resnet_finetune_learning_rate)
    _fit(model, data, cfg, cfg.resnet_finetune_epochs, trained)
    return trained


def fine_tune(
    model: keras.Model, source: str, data: PreparedData, cfg: TrainConfig, epochs: int
) -> TrainedModel:
    """Warm start: continue training a registered model at the fine-tuning learning rate."""
    keras.utils.set_random_seed(cfg.seed)
    compile_model(model, cfg.resnet_finetune_learning_rate)
    trained = TrainedModel("resnet", model, weights_source=f"warm start from {source}")
    _fit(model, data, cfg, epochs, trained)
    return trained
