"""Validation AUC vs CPU wall time for the pretrained ResNet's size and depth choices.

    python -m benchmarks.transfer_curve [--home DIR] [--sizes 128 160 224] [--out curve.csv]

For each image size the frozen bottom runs once over train and val (cut below conv5, the deepest
cut measured); each unfrozen depth then starts from a fresh ImageNet model: the head on cached
pooled features (phase 1), then the unfrozen blocks on cached activations (phase 2). Each row is
one epoch: the wall time since the size's caching started (cache time included, timed per phase,
spread evenly over the phase's epochs) and the val AUC after it. Choose the defaults on this
split's val AUC; test images are not touched.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import keras

from benchmarks.common import WEIGHTS, machine, peak_rss_mib, split_data
from pipeline.settings import TrainConfig
from pipeline.train.fit import CachedActivations, TrainedModel, train_head, train_top
from pipeline.train.inputs import PreparedData
from pipeline.train.models import BASE_LAYER, build_resnet
from pipeline.train.transfer import compute_activations, cut_layer, split_resnet

DEEPEST = 3  # blocks: the whole conv5 stage


def cache_deepest(data: PreparedData, cfg: TrainConfig) -> tuple[CachedActivations, float]:
    model = build_resnet(cfg, str(WEIGHTS), data.prior)
    parts = split_resnet(model, DEEPEST)
    start = time.perf_counter()
    train = compute_activations(parts.bottom, data.train.paths, cfg.batch_size)
    val = compute_activations(parts.bottom, data.val.paths, cfg.batch_size)
    return CachedActivations(train, data.train.labels, val), time.perf_counter() - start


def deepen(cached: CachedActivations, model: keras.Model, blocks: int) -> CachedActivations:
    """Activations at a higher cut, from the deepest cut's, through the frozen blocks between."""
    if blocks == DEEPEST:
        return cached
    base = model.get_layer(BASE_LAYER)
    between = keras.Model(
        base.get_layer(cut_layer(DEEPEST)).output, base.get_layer(cut_layer(blocks)).output
    )
    return CachedActivations(
        between.predict(cached.train, batch_size=32, verbose=0),
        cached.train_labels,
        between.predict(cached.val, batch_size=32, verbose=0),
    )


def run_depth(
    data: PreparedData, cfg: TrainConfig, deepest: CachedActivations, cache_s: float
) -> list[dict]:
    """Phase 1 then phase 2 from a fresh ImageNet model; one row per epoch."""
    keras.utils.set_random_seed(cfg.seed)
    model = build_resnet(cfg, str(WEIGHTS), data.prior)
    trained = TrainedModel("resnet", model)
    start = time.perf_counter()
    cached = deepen(deepest, model, cfg.resnet_unfreeze_blocks)
    parts = split_resnet(model, cfg.resnet_unfreeze_blocks)
    trained.add_phase("cache", cache_s + time.perf_counter() - start)
    train_head(parts, cached, data, cfg, trained)
    head_epochs = len(trained.history["val_auc"])
    train_top(parts, cached, data, cfg, cfg.resnet_finetune_epochs, trained)
    return epoch_rows(trained, head_epochs, cfg)


def epoch_rows(trained: TrainedModel, head_epochs: int, cfg: TrainConfig) -> list[dict]:
    aucs = trained.history["val_auc"]
    phases = (
        ("head", aucs[:head_epochs], trained.phases["head"]),
        ("fine_tune", aucs[head_epochs:], trained.phases.get("fine_tune", 0.0)),
    )
    elapsed = trained.phases["cache"] + trained.phases["features"]
    rows = []
    for phase, values, seconds in phases:
        for epoch, auc in enumerate(values, 1):
            elapsed += seconds / len(values)
            rows.append(
                {
                    "size": cfg.image_size,
                    "blocks": cfg.resnet_unfreeze_blocks,
                    "phase": phase,
                    "epoch": epoch,
                    "wall_s": round(elapsed, 1),
                    "val_auc": round(auc, 4),
                }
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path(".bench/train224"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 160, 224])
    parser.add_argument("--blocks", type=int, nargs="+", default=[0, 1, 3])
    parser.add_argument("--finetune-lr", type=float, default=1e-4)
    parser.add_argument("--out", type=Path, default=Path(".bench/transfer_curve.csv"))
    args = parser.parse_args()
    print(machine())
    rows: list[dict] = []
    for size in args.sizes:
        # The curve of the epoch-trained head on conv5 (the recipe its table in
        # docs/explanation/measured.md measured).
        base_cfg = TrainConfig(
            image_size=size, batch_size=32, resnet_weights=str(WEIGHTS), resnet_head_fit="adam",
            resnet_head_features="conv5",
        )  # fmt: skip
        data = split_data(args.home, base_cfg)
        deepest, cache_s = cache_deepest(data, base_cfg)
        images = len(data.train.paths) + len(data.val.paths)
        print(f"{size} px: cached {images} train+val images in {cache_s:.0f} s")
        for blocks in args.blocks:
            cfg = base_cfg.model_copy(
                update={
                    "resnet_unfreeze_blocks": blocks,
                    "resnet_head_epochs": 15,
                    "resnet_finetune_epochs": 3 if blocks else 0,
                    "resnet_finetune_learning_rate": args.finetune_lr,
                }
            )
            rows += run_depth(data, cfg, deepest, cache_s)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"peak RSS {peak_rss_mib():.0f} MiB; rows in {args.out}")


if __name__ == "__main__":
    main()
