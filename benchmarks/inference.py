"""ResNet inference on this CPU: Keras `predict`, a compiled direct call, and ONNX Runtime.

    python -m benchmarks.inference [--size 128] [--batch 32] [--batches 8]

Scores the same real images (decoded once, outside the timing) with the pretrained ResNet and a
trained-looking random head, batch by batch, and prints img/s, GFLOP/s against the fp32 peak and
the largest probability difference from Keras `predict`. ONNX Runtime is measured only when
`tf2onnx` and `onnxruntime` are importable (they are not project dependencies).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import PEAK_GFLOPS, TRAIN224, WEIGHTS, machine
from benchmarks.flops import forward_flops
from pipeline.settings import TrainConfig
from pipeline.train.inputs import InputSpec, image_batches
from pipeline.train.models import HEAD_LAYER, build_resnet


def images(size: int, count: int) -> np.ndarray:
    paths = sorted(str(p) for p in (TRAIN224 / "train").rglob("*.jpeg"))[::7][:count]
    return next(iter(image_batches(paths, InputSpec(size), count))).numpy()


def measure(score: Callable[[np.ndarray], np.ndarray], batches: list[np.ndarray]) -> tuple:
    score(batches[0])  # tracing and allocation, not timed
    best, out = float("inf"), None
    for _ in range(3):
        start = time.perf_counter()
        out = np.concatenate([np.asarray(score(b)).ravel() for b in batches])
        best = min(best, time.perf_counter() - start)
    return sum(len(b) for b in batches) / best, out


def onnx_scorer(model: keras.Model) -> Callable[[np.ndarray], np.ndarray] | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    path = Path(tempfile.mkdtemp()) / "model.onnx"
    start = time.perf_counter()
    model.export(str(path), format="onnx", verbose=False)
    print(
        f"ONNX export: {time.perf_counter() - start:.1f} s, {path.stat().st_size / 2**20:.0f} MiB"
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()
    print(machine())
    keras.utils.set_random_seed(0)
    model = build_resnet(TrainConfig(image_size=args.size), str(WEIGHTS), 0.7)
    head = model.get_layer(HEAD_LAYER)
    width = head.kernel.shape[0]
    head.set_weights([np.random.default_rng(0).normal(0, 0.02, (width, 1)), np.zeros(1)])
    data = images(args.size, args.batch * args.batches)
    batches = [data[i : i + args.batch] for i in range(0, len(data), args.batch)]
    compiled = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    scorers = {
        "keras predict": lambda b: model.predict(b, batch_size=args.batch, verbose=0),
        "keras predict_on_batch": model.predict_on_batch,
        "direct call (eager)": lambda b: model(b, training=False).numpy(),
        "direct call (tf.function)": lambda b: compiled(b).numpy(),
    }
    model.predict(batches[0], verbose=0)  # Keras exports only a model that has been called
    onnx = onnx_scorer(model)
    if onnx is not None:
        scorers["onnxruntime"] = onnx
    gflop = forward_flops(model) / 1e9
    print(f"{gflop:.2f} GFLOP per image forward at {args.size} px; batches of {args.batch}")
    reference = None
    for name, score in scorers.items():
        rate, out = measure(score, batches)
        reference = out if reference is None else reference
        print(
            f"{name:28s} {rate:6.1f} img/s  {rate * gflop:6.1f} GFLOP/s "
            f"({100 * rate * gflop / PEAK_GFLOPS:4.1f} % of {PEAK_GFLOPS:.0f})  "
            f"max |p - predict| {np.abs(out - reference).max():.1e}"
        )


if __name__ == "__main__":
    main()
