"""Drift-check and feature-extraction timings: `python benchmarks/drift.py`.

- Evidently drift check of 1,000 current vs 5,000 reference feature rows (synthetic numbers with
  the real column set; the check's cost depends on row and column counts, not on the values).
- Per-image feature extraction on the bundled sample (JPEG decode included): image statistics,
  and the ResNet probability + embedding (the model part of the features).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.monitor.drift import check_drift
from pipeline.predict.drift_features import FEATURE_COLUMNS, image_features
from pipeline.settings import DriftConfig

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def main() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(
        rng.normal(size=(5000, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS)
    )
    current = pd.DataFrame(
        rng.normal(0.2, 1, size=(1000, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS)
    )
    check_drift(
        reference.head(200), current.head(100), DriftConfig(), threshold=0.0
    )  # imports, warm-up
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        result = check_drift(reference, current, DriftConfig(last_n=None), threshold=0.0)
        timings.append(time.perf_counter() - start)
    print(
        f"drift check 1000 vs 5000 rows, {len(FEATURE_COLUMNS)} feature columns: "
        f"median {np.median(timings):.2f} s over 3 runs ({result.status})"
    )
    files = sorted(SAMPLE.rglob("*.jpeg"))
    start = time.perf_counter()
    for path in files:
        image_features(path.read_bytes())
    per_image = (time.perf_counter() - start) / len(files)
    print(f"image features: {1000 * per_image:.1f} ms per image over {len(files)} images")
    measure_embeddings(files[:64])


def measure_embeddings(files: list[Path], size: int = 128) -> None:
    """Probability + embedding with the ResNet at the cpu-small size (decode included)."""
    from pipeline.predict.probe import embedding_model, probe_images
    from pipeline.settings import TrainConfig
    from pipeline.train.models import build_resnet

    probe = embedding_model(build_resnet(TrainConfig(image_size=size), None))
    images = [p.read_bytes() for p in files]
    probe_images(probe, images[:8])  # tracing
    start = time.perf_counter()
    probe_images(probe, images)
    per_image = (time.perf_counter() - start) / len(images)
    print(f"ResNet50 {size} px probability + embedding: {1000 * per_image:.1f} ms per image")


if __name__ == "__main__":
    main()
