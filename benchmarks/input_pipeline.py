"""Is tf.data the bottleneck? The training input pipeline alone, without a model.

    python -m benchmarks.input_pipeline [--home .bench/train224] [--size 128]

Iterates the CNN's training dataset (decode, resize, cache, shuffle, batch, augment) over the
train split twice: the first epoch decodes the files, later epochs read the in-memory cache and
only augment. Compare with the training img/s of `time_to_quality`: a pipeline many times faster
than training cannot be what training waits for.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.common import machine, split_data
from pipeline.settings import TrainConfig
from pipeline.train.inputs import InputSpec, make_dataset
from pipeline.train.models import build_augmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path(".bench/train224"))
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    print(machine())
    cfg = TrainConfig(image_size=args.size)
    data = split_data(args.home, cfg)
    paths, labels = data.train.paths, data.train.labels
    augmenter = build_augmenter(cfg.augment, cfg.seed)
    dataset = make_dataset(paths, labels, InputSpec(args.size), cfg.batch_size, augmenter, cfg.seed)
    for epoch in ("first (decode + augment)", "second (cache + augment)"):
        start = time.perf_counter()
        count = sum(int(images.shape[0]) for images, _ in dataset)
        seconds = time.perf_counter() - start
        print(f"{epoch}: {count} images in {seconds:.1f} s = {count / seconds:.0f} img/s")


if __name__ == "__main__":
    main()
