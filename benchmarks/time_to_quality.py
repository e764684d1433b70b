"""Time to quality: a seed-style Keras reference against the project's training, one split, one CPU.

    python -m benchmarks.time_to_quality [--home .bench/train224] [--size 128]

Both train on the project's patient-level split of the 5,216 official train images and are
scored on its carved test split after every epoch (scoring time is not counted). The reference
is written as the seed notebook describes it: `image_dataset_from_directory` over train+val with
a random 10 % validation split, 128 px, rescale to 0..1, rotation/zoom/shift/flip layers, class
weights; a CNN for 10 epochs; ImageNet ResNet50 frozen + new head for 3 epochs, then the top 30
layers at 1e-5 for 2 epochs; threshold 0.5. The project's models train as `pneumo train` trains
them (cpu-small profile, ImageNet weights from the shared file), threshold chosen on val.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.common import PEAK_GFLOPS, TRAIN224, WEIGHTS, machine, peak_rss_mib, split_data
from benchmarks.flops import forward_flops, layers_flops, training_flops
from pipeline.settings import Settings, ThresholdConfig
from pipeline.train.fit import TrainedModel, build_resnet_with_weights, fit_pretrained, train_cnn
from pipeline.train.inputs import InputSpec, PreparedData, make_dataset, predict_files
from pipeline.train.metrics import choose_threshold, compute_metrics
from pipeline.train.transfer import compute_activations, split_resnet


class Clock:
    """Training wall time with the per-epoch test scoring taken out."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.paused = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start - self.paused


@dataclass
class Run:
    name: str
    score: Callable[[], np.ndarray]  # test probabilities of the model as it is now
    clock: Clock = field(default_factory=Clock)
    points: list[tuple[float, float]] = field(default_factory=list)  # (seconds, test AUC)
    images: int = 0
    flop: float = 0.0


class ScoreEachEpoch(keras.callbacks.Callback):
    def __init__(self, run: Run, labels: np.ndarray) -> None:
        super().__init__()
        self.run, self.labels = run, labels

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        stopped = time.perf_counter()
        seconds = self.run.clock.elapsed()
        self.run.points.append((seconds, float(roc_auc_score(self.labels, self.run.score()))))
        self.run.clock.paused += time.perf_counter() - stopped
        print(f"  {self.run.name}: {seconds:.0f} s, test AUC {self.run.points[-1][1]:.4f}")


def link_split(root: Path, paths: list[str], labels: np.ndarray) -> Path:
    """A Kaggle-style `root/{NORMAL,PNEUMONIA}/` folder of links to the split's files."""
    for index, (path, label) in enumerate(zip(paths, labels, strict=True)):
        # Numbered: the store names files by content, and the dataset holds identical files.
        target = root / ("PNEUMONIA" if label else "NORMAL") / f"{index:05d}-{Path(path).name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(path)
    return root


def seed_augmentation() -> list[keras.Layer]:
    return [
        keras.layers.RandomRotation(0.1),
        keras.layers.RandomZoom(0.1),
        keras.layers.RandomTranslation(0.1, 0.1),
        keras.layers.RandomFlip("horizontal"),
        keras.layers.Rescaling(1.0 / 255),
    ]


def seed_cnn(size: int) -> keras.Model:
    layers: list[keras.Layer] = [keras.Input((size, size, 3)), *seed_augmentation()]
    for filters, dropout in ((32, 0.0), (64, 0.2), (128, 0.3)):
        layers += [
            keras.layers.Conv2D(filters, 3, activation="relu", padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.MaxPooling2D(),
        ]
        layers += [keras.layers.Dropout(dropout)] if dropout else []
    layers += [
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(1, activation="sigmoid"),
    ]
    return keras.Sequential(layers, name="seed_cnn")


def seed_resnet(size: int) -> tuple[keras.Model, keras.Model]:
    base = keras.applications.ResNet50(
        include_top=False, weights=str(WEIGHTS), input_shape=(size, size, 3)
    )
    base.trainable = False
    model = keras.Sequential(
        [
            keras.Input((size, size, 3)),
            *seed_augmentation(),
            base,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="seed_resnet",
    )
    return model, base


def seed_compile(model: keras.Model, learning_rate: float) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )


def run_reference(data: PreparedData, size: int, tmp: Path, seed: int) -> list[dict]:
    """The seed-style CNN and ResNet; returns one result row per model."""
    pool = link_split(
        tmp / "seed-train",
        data.train.paths + data.val.paths,
        np.concatenate([data.train.labels, data.val.labels]),
    )
    test_dir = link_split(tmp / "seed-test", data.test.paths, data.test.labels)
    load = keras.utils.image_dataset_from_directory
    options = {"image_size": (size, size), "batch_size": 32, "label_mode": "binary"}
    test = load(test_dir, shuffle=False, **options).cache()
    test_labels = np.concatenate([y.numpy().ravel() for _, y in test])
    rows = []
    for name in ("seed ResNet50", "seed CNN"):
        keras.utils.set_random_seed(seed)
        clock = Clock()
        train, val = load(pool, validation_split=0.1, subset="both", seed=seed, **options)
        labels = np.concatenate([y.numpy().ravel() for _, y in train])
        weights = {0: len(labels) / (2 * (labels == 0).sum()), 1: len(labels) / (2 * labels.sum())}
        train, val = train.cache(), val.cache()
        model, base = (seed_cnn(size), None) if name == "seed CNN" else seed_resnet(size)
        run = Run(name, lambda m=model: m.predict(test, verbose=0).ravel(), clock)
        watch = [ScoreEachEpoch(run, test_labels)]
        phases = [(1e-3, 10, None)] if base is None else [(1e-3, 3, None), (1e-5, 2, 30)]
        for learning_rate, epochs, unfreeze in phases:
            if unfreeze:
                base.trainable = True
                for layer in base.layers[:-unfreeze]:
                    layer.trainable = False
            seed_compile(model, learning_rate)
            model.fit(train, validation_data=val, epochs=epochs, class_weight=weights,
                      callbacks=watch, verbose=0)  # fmt: skip
            run.images += epochs * len(labels)
            # Frozen layers run forward only; trained ones also backward (2x their forward).
            updated = base.layers[-unfreeze:] if unfreeze else [] if base else model.layers
            per_image = forward_flops(model) + 2 * layers_flops(updated)
            run.flop += epochs * len(labels) * per_image
        rows.append(result(run, test_labels, run.score(), 0.5, "0.5"))
        print(name, {k: v for k, v in rows[-1].items() if k != "points"}, flush=True)
    return rows


def run_project_cnn(data: PreparedData, settings: Settings) -> dict:
    """The CNN exactly as `pneumo train` fits it."""
    cfg = settings.training
    test_labels = data.test.labels
    test_images = make_dataset(data.test.paths, test_labels, InputSpec(cfg.image_size), 32).cache()
    cnn_holder: dict[str, keras.Model] = {}
    run = Run("project CNN", lambda: cnn_holder["model"].predict(test_images, verbose=0).ravel())

    class Hold(keras.callbacks.Callback):
        def set_model(self, model: keras.Model) -> None:
            cnn_holder["model"] = model

    trained = train_cnn(data, cfg, [Hold(), ScoreEachEpoch(run, test_labels)])
    run.images, run.flop = trained.images_seen, trained.images_seen * training_flops(trained.model)
    return project_result(run, trained, data, settings)


def run_project_resnet(data: PreparedData, settings: Settings) -> dict:
    """The ResNet exactly as `pneumo train` fits it (ImageNet weights from the shared file)."""
    cfg = settings.training
    test_labels = data.test.labels
    clock = Clock()
    model, source = build_resnet_with_weights(cfg, str(WEIGHTS), data.prior)
    parts = split_resnet(model, cfg.resnet_unfreeze_blocks)
    stopped = time.perf_counter()
    test_cut = compute_activations(parts.bottom, data.test.paths, cfg.batch_size)
    clock.paused += time.perf_counter() - stopped
    run = Run("project ResNet50", lambda: parts.top.predict(test_cut, verbose=0).ravel(), clock)
    trained = TrainedModel("resnet", model, weights_source=source)
    fit_pretrained(parts, data, cfg, trained, [ScoreEachEpoch(run, test_labels)])
    views = cfg.resnet_feature_views + len(cfg.resnet_view_crops)
    cached_images = len(data.train.paths) * views + len(data.val.paths)
    # Head epochs see pooled features only (negligible FLOPs); fine-tuning runs the unfrozen top.
    fine_tuned = trained.epochs.get("fine_tune", 0) * len(data.train.paths) * views
    cache_flop = cached_images * forward_flops(parts.bottom)
    run.images = trained.images_seen
    run.flop = cache_flop + fine_tuned * training_flops(parts.top)
    row = project_result(run, trained, data, settings)
    print(row, trained.phases, flush=True)
    row["phases"] = {
        **trained.phases,
        "cache GFLOP/s": round(cache_flop / trained.phases["cache"] / 1e9, 1),
        "fine_tune GFLOP/s": round(
            fine_tuned * training_flops(parts.top) / trained.phases.get("fine_tune", 1) / 1e9, 1
        ),
    }
    return row


def project_result(run: Run, trained: TrainedModel, data: PreparedData, settings: Settings) -> dict:
    """Scores at the threshold the project's rule picks on val; both splits' scores are saved
    as `<home>/time_to_quality/<kind>/{val,test}_predictions.csv` for `threshold_rules`."""
    val_scores = predict_files(trained.model, data.val.paths)
    test_scores = run.score()
    out = settings.home / "time_to_quality" / trained.kind
    out.mkdir(parents=True, exist_ok=True)
    for name, split, scores in (("val", data.val, val_scores), ("test", data.test, test_scores)):
        split.rows[["path", "label", "patient_id"]].assign(probability=scores).to_csv(
            out / f"{name}_predictions.csv", index=False
        )
    threshold, rule = choose_threshold(data.val.labels, val_scores, settings.threshold)
    return result(run, data.test.labels, test_scores, threshold, rule)


def result(run: Run, labels: np.ndarray, scores: np.ndarray, threshold: float, rule: str) -> dict:
    metrics = compute_metrics(labels, scores, threshold)
    seconds = run.points[-1][0]
    return {
        "model": run.name,
        "wall_s": round(seconds),
        "train_img_s": round(run.images / seconds, 1),
        "gflops": round(run.flop / seconds / 1e9, 1),
        "test_auc": round(metrics["roc_auc"], 4),
        "sensitivity": round(metrics["sensitivity"], 3),
        "specificity": round(metrics["specificity"], 3),
        "accuracy": round(metrics["accuracy"], 3),
        "threshold": f"{threshold:.3f} ({rule})",
        "points": run.points,
    }


def first_reaching(points: list[tuple[float, float]], target: float) -> str:
    reached = [seconds for seconds, auc in points if auc >= target]
    return f"{reached[0]:.0f}" if reached else "never"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path(".bench/train224"))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--source", type=Path, default=TRAIN224, help="Kaggle-layout folder")
    parser.add_argument(
        "--skip-project-cnn", action="store_true", help="its figures are `pneumo train`'s"
    )
    args = parser.parse_args()
    print(machine())
    settings = Settings(home=args.home, threshold=ThresholdConfig())
    cfg = settings.training.model_copy(update={"resnet_weights": str(WEIGHTS)})
    settings = settings.model_copy(update={"train": cfg})
    data = split_data(args.home, cfg, args.source)
    print(f"split: {len(data.train.paths)} train, {len(data.val.paths)} val, "
          f"{len(data.test.paths)} test images")  # fmt: skip
    # The ResNets first: the comparison that matters most is done even if a run is cut short.
    rows = [run_project_resnet(data, settings)]
    with tempfile.TemporaryDirectory() as tmp:
        rows += run_reference(data, args.size, Path(tmp), cfg.seed)
    if not args.skip_project_cnn:
        rows.append(run_project_cnn(data, settings))
    target = max(auc for row in rows if row["model"].startswith("seed") for _, auc in row["points"])
    print(f"\nreference's best test AUC: {target:.4f}; peak RSS {peak_rss_mib():.0f} MiB;"
          f" fp32 peak {PEAK_GFLOPS:.0f} GFLOP/s\n")  # fmt: skip
    print("| model | wall s | train img/s | GFLOP/s | test AUC | sens. | spec. | acc. "
          "| threshold | s to reference best |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['model']} | {row['wall_s']} | {row['train_img_s']} | {row['gflops']} "
            f"| {row['test_auc']:.4f} | {row['sensitivity']:.3f} | {row['specificity']:.3f} "
            f"| {row['accuracy']:.3f} | {row['threshold']} "
            f"| {first_reaching(row['points'], target)} |"
        )
    for row in rows:
        epochs = [(round(s), round(auc, 4)) for s, auc in row["points"]]
        print(row["model"], "per epoch (s, test AUC):", epochs, row.get("phases", ""))


if __name__ == "__main__":
    main()
