"""The worst `/explain` request: time, peak memory and reply sizes for a huge flat film.

    python -m benchmarks.explain_memory [--side 1024]

A 51 KB PNG can claim ~40 Mpx (just under PNEUMO_INGEST__MAX_PIXELS): the hardening issue saw
25 s, 1.2 -> 4.9 GB and a 159 MB JSON reply for it. The handler runs in this process on an
untrained 224 px CNN (Grad-CAM's cost does not depend on the weights), so no state is needed.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import time
from contextlib import nullcontext

import pandas as pd
from PIL import Image

from pipeline.predict.champion import Champion
from pipeline.serve.handlers import explain_upload
from pipeline.settings import Settings, TrainConfig
from pipeline.train.models import build_cnn

WIDTH, HEIGHT = 7280, 5450  # 39.7 Mpx, under the default 40 Mpx limit


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=Settings().serve_explain_max_side)
    args = parser.parse_args()
    model = build_cnn(TrainConfig(image_size=224), prior=0.7)
    # No projection or reference: /explain uses neither.
    champion = Champion("pneumonia-resnet", "0", "run", 0.5, model, None, pd.DataFrame())
    buffer = io.BytesIO()
    Image.new("L", (WIDTH, HEIGHT), 90).save(buffer, "PNG")
    upload = buffer.getvalue()
    before = peak_rss_mb()
    started = time.perf_counter()
    png, heatmap = explain_upload(champion, "flat.png", upload, args.side, nullcontext())
    seconds = time.perf_counter() - started
    raw = json.dumps({"heatmap": heatmap.round(4).tolist()})
    print(
        f"upload {len(upload) / 1024:.0f} KB, {WIDTH * HEIGHT / 1e6:.1f} Mpx: {seconds:.1f} s, "
        f"peak RSS {before:.0f} -> {peak_rss_mb():.0f} MB; overlay "
        f"{Image.open(io.BytesIO(png)).size} ({len(png) / 1024:.0f} KB), raw heatmap "
        f"{heatmap.shape} ({len(raw) / 1e6:.2f} MB as JSON)"
    )


if __name__ == "__main__":
    main()
