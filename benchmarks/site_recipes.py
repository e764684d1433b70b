"""Which ResNet recipe ranks the deployment site's films best: site-set AUC against wall time.

    python -m benchmarks.site_recipes probe [--crops 0.85 0.7] [--size 128 160 224]
        [--inputs raw equalize] [--c 0.01]
    python -m benchmarks.site_recipes finetune --blocks 3 --epochs 3 [--crops 0.85 0.7]
        [--intensity equalize] [--lr 1e-4] [--head logistic|adam] [--head-features conv4+conv5]

Validation films come from the training period and are saturated (AUC 0.99+ for every recipe),
so recipes are compared on the site's labelled films (`shared/data/chest_xray_site`, 204 films
of a later period), which nothing here trains on. Training uses the project's own patient split
of the official train films (`benchmarks.common.split_data`).

- `probe`: frozen ImageNet ResNet50 (128 px unless `--size`), logistic regression
  (scikit-learn, standardised features, balanced classes, C = `--c`) on globally pooled conv3,
  conv4 and conv5 features (and conv5 max-pooled), alone and side by side, for raw and
  equalised input, without and with central-crop views of the training films. Minutes.
- `finetune`: the project's training path (`pipeline.train.fit`: head on cached pooled
  features, then the top `--blocks` residual blocks on cached activations), scoring the site
  films after every epoch: site AUC, and sensitivity and specificity at the threshold the
  project's rule picks on val. Each row's wall time counts from the start of caching.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from benchmarks.common import SHARED, WEIGHTS, machine, split_data
from pipeline.layers import EqualizeHistogram
from pipeline.settings import ThresholdConfig, TrainConfig
from pipeline.train.fit import TrainedModel, cache_activations, train_head, train_top
from pipeline.train.inputs import InputSpec, image_batches
from pipeline.train.metrics import choose_threshold
from pipeline.train.models import IMAGENET_BGR_MEAN, build_resnet
from pipeline.train.transfer import compute_activations, split_resnet

SITE = SHARED / "data" / "chest_xray_site"
SIZE = 128


def site_films() -> tuple[list[str], np.ndarray]:
    paths = sorted(str(p) for p in SITE.glob("*/*.jpeg"))
    return paths, np.array([Path(p).parent.name == "PNEUMONIA" for p in paths], np.float32)


# Columns of `pooled_features`: which pooled map each group of features is.
COLUMNS = {"conv3": slice(0, 512), "conv4": slice(512, 1536), "conv5": slice(1536, 3584),
           "conv5 max": slice(3584, 5632)}  # fmt: skip
PROBES = (("conv5",), ("conv4",), ("conv3",), ("conv5 max",), ("conv4", "conv5"),
          ("conv3", "conv4", "conv5"))  # fmt: skip


def pooled_features(paths: list[str], equalize: bool, crop: float, size: int) -> np.ndarray:
    """GAP(conv3), GAP(conv4), GAP(conv5) and GMP(conv5) of the frozen ImageNet ResNet50."""
    base = keras.applications.ResNet50(
        include_top=False, weights=str(WEIGHTS), input_shape=(size, size, 3)
    )
    pool = keras.layers.GlobalAveragePooling2D
    maps = [base.get_layer(f"conv{n}_block{b}_out").output for n, b in ((3, 4), (4, 6))]
    pooled = [pool()(m) for m in (*maps, base.output)]
    outputs = [*pooled, keras.layers.GlobalMaxPooling2D()(base.output)]
    net = keras.Model(base.input, keras.layers.Concatenate()(outputs))
    equalizer = EqualizeHistogram()

    @tf.function(reduce_retracing=True)
    def run(images: tf.Tensor) -> tf.Tensor:
        gray = equalizer(images) if equalize else images
        return net(tf.concat([gray] * 3, -1) - IMAGENET_BGR_MEAN, training=False)

    batches = image_batches(paths, InputSpec(size), 64, crop)
    return np.concatenate([run(batch).numpy() for batch in batches])


def probe_auc(
    train: np.ndarray, labels: np.ndarray, site: np.ndarray, site_y: np.ndarray, c: float
) -> float:
    mean, std = train.mean(0), train.std(0) + 1e-6
    model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    model.fit((train - mean) / std, labels)
    return float(roc_auc_score(site_y, model.decision_function((site - mean) / std)))


def run_probes(home: Path, args: argparse.Namespace) -> None:
    data = split_data(home, TrainConfig(image_size=SIZE))
    paths = data.train.paths + data.val.paths  # a probe needs no validation split
    labels = np.concatenate([data.train.labels, data.val.labels])
    site, site_y = site_films()
    names = ["+".join(probe) for probe in PROBES]
    print("| px | input | training views | C | " + " | ".join(names) + " | feature time (s) |")
    print("| --- " * (len(names) + 5) + "|")
    for size, equalize in ((s, i == "equalize") for s in args.size for i in args.inputs):
        start = time.perf_counter()
        views = [pooled_features(paths, equalize, crop, size) for crop in (1.0, *args.crops)]
        site_x = pooled_features(site, equalize, 1.0, size)
        seconds = time.perf_counter() - start
        for count, c in ((n, c) for n in sorted({1, len(views)}) for c in args.c):
            x, y = np.concatenate(views[:count]), np.tile(labels, count)
            aucs = []
            for probe in PROBES:
                part = np.concatenate([np.arange(x.shape[1])[COLUMNS[n]] for n in probe])
                aucs.append(probe_auc(x[:, part], y, site_x[:, part], site_y, c))
            name = "equalised" if equalize else "raw"
            crops_named = ", ".join(f"{crop:.2f}" for crop in (1.0, *args.crops)[:count])
            cells = " | ".join(f"{a:.4f}" for a in aucs)
            print(f"| {size} | {name} | {crops_named} | {c} | {cells} | {seconds:.0f} |")


class SiteEachEpoch(keras.callbacks.Callback):
    """Site AUC, and sensitivity/specificity at the val-chosen threshold, after each epoch."""

    def __init__(self, net, site, val, val_y, site_y, start: float, phase: str) -> None:
        super().__init__()
        self.net, self.site, self.val = net, site, val
        self.val_y, self.site_y, self.start, self.phase = val_y, site_y, start, phase

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        site = self.net.predict(self.site, batch_size=64, verbose=0).ravel()
        val = self.net.predict(self.val, batch_size=64, verbose=0).ravel()
        threshold, _ = choose_threshold(self.val_y, val, ThresholdConfig())
        positive = self.site_y == 1
        sens = float(np.mean(site[positive] >= threshold))
        spec = float(np.mean(site[~positive] < threshold))
        print(f"| {self.phase} | {epoch + 1} | {time.perf_counter() - self.start:.0f} | "
              f"{roc_auc_score(self.val_y, val):.4f} | {roc_auc_score(self.site_y, site):.4f} "
              f"| {sens:.3f} | {spec:.3f} |", flush=True)  # fmt: skip


def run_finetune(home: Path, args: argparse.Namespace) -> None:
    cfg = TrainConfig(
        image_size=SIZE, resnet_weights=str(WEIGHTS), resnet_intensity_norm=args.intensity,
        resnet_view_crops=args.crops, resnet_unfreeze_blocks=args.blocks,
        resnet_finetune_epochs=args.epochs, resnet_finetune_learning_rate=args.lr, patience=99,
        resnet_head_fit=args.head, resnet_head_features=args.head_features,
    )  # fmt: skip
    data = split_data(home, cfg)
    keras.utils.set_random_seed(cfg.seed)
    model = build_resnet(cfg, str(WEIGHTS), data.prior)
    parts = split_resnet(model, cfg.resnet_unfreeze_blocks)
    trained = TrainedModel("resnet", model)
    start = time.perf_counter()
    cached = cache_activations(parts, data, cfg, trained)
    site, site_y = site_films()
    site_cut = compute_activations(parts.bottom, site, cfg.batch_size)
    print("| phase | epoch | wall s | val AUC | site AUC | site sens. | site spec. |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    pooled = [parts.features.predict(x, verbose=0) for x in (site_cut, cached.val)]
    watch = SiteEachEpoch(parts.head, *pooled, data.val.labels, site_y, start, "head")
    train_head(parts, cached, data, cfg, trained, [watch])
    if cfg.resnet_head_fit == "logistic":  # one exact fit, no epochs: scored once ("epoch 0")
        watch.on_epoch_end(-1)
    watch = SiteEachEpoch(parts.top, site_cut, cached.val, data.val.labels, site_y, start, "top")
    train_top(parts, cached, data, cfg, cfg.resnet_finetune_epochs, trained, [watch])
    print(f"phases (s): {trained.phases}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["probe", "finetune"])
    parser.add_argument("--home", type=Path, default=Path(".bench/train224"))
    parser.add_argument("--crops", type=float, nargs="*", default=[0.85, 0.7])
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--intensity", choices=["none", "equalize"], default="equalize")
    parser.add_argument("--head", choices=["logistic", "adam"], default="logistic")
    parser.add_argument("--head-features", choices=["conv5", "conv4+conv5"], default="conv4+conv5")
    parser.add_argument("--size", type=int, nargs="+", default=[SIZE], help="probe only")
    parser.add_argument("--c", type=float, nargs="+", default=[0.01], help="probe only")
    parser.add_argument("--inputs", nargs="+", choices=["raw", "equalize"],
                        default=["raw", "equalize"], help="probe only")  # fmt: skip
    args = parser.parse_args()
    print(machine(), flush=True)
    if args.mode == "probe":
        run_probes(args.home, args)
    else:
        run_finetune(args.home, args)


if __name__ == "__main__":
    main()
