"""Sharded batch inference (`batch-predict`) with 1 and 2 local Dask workers.

    PNEUMO_HOME=<state with a ResNet champion> python -m benchmarks.batch_predict \
        [--images 800] [--shard-size 100] [--workers 1 2]

Scores the same real images (the official train images at 224 px) once per worker count, each
run a new job (its own copy of the folder), and prints the flow's wall time and images/s: the
Dask cluster's start, each worker's model load, decoding, scoring, drift features and the
inference-log writes are all inside it. Run it with no other load on the machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import TRAIN224, machine
from flows.batch_predict import batch_predict


def copy_images(count: int, into: Path) -> Path:
    """`count` images, both classes, in a folder of the run's own (a new job each time)."""
    paths = sorted((TRAIN224 / "train").rglob("*.jpeg"))[::3][:count]
    into.mkdir(parents=True)
    for path in paths:
        shutil.copyfile(path, into / path.name)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=800)
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    # As `pneumo` runs it: the temporary Prefect server sends no telemetry (none reachable).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            folder = copy_images(args.images, Path(tmp) / f"workers-{workers}")
            started = time.perf_counter()
            summary = batch_predict(str(folder), args.shard_size, workers)
            wall = time.perf_counter() - started
            print(
                f"{workers} worker(s): {summary.images_scored} images in "
                f"{summary.shards} shards, {summary.seconds} s in the shards' flow "
                f"({summary.images_per_second} images/s), {wall:.1f} s with the run's start"
            )


if __name__ == "__main__":
    main()
