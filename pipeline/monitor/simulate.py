"""Make shifted copies of real X-rays, so users can watch the drift loop react."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter

from pipeline.files import write_atomic

DriftKind = Literal["none", "contrast", "blur", "noise", "brightness"]


def shift_image(data: bytes, kind: DriftKind, seed: int = 0) -> bytes:
    """The image with one acquisition change applied, re-encoded as JPEG."""
    image = Image.open(io.BytesIO(data)).convert("L")
    if kind == "contrast":  # a washed-out film: intensities squeezed towards grey
        image = image.point(lambda v: int(128 + (v - 128) * 0.35))
    elif kind == "blur":  # an out-of-focus detector
        image = image.filter(ImageFilter.GaussianBlur(radius=max(image.size) / 150))
    elif kind == "noise":  # a low-dose, noisy acquisition
        pixels = np.asarray(image, dtype=np.float64)
        pixels += np.random.default_rng(seed).normal(0, 45, pixels.shape)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    elif kind == "brightness":  # over-exposure
        image = image.point(lambda v: min(255, int(v * 1.5 + 40)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def simulate_batch(source: Path, out: Path, kind: DriftKind) -> int:
    """Write a shifted copy of every image under `source` into `out` (flat); returns the count."""
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
    if not files:
        raise FileNotFoundError(f"no JPEG or PNG images under {source}")
    out.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(files):
        target = out / f"{path.stem}-{kind}.jpeg"
        if target.exists():
            raise FileExistsError(f"{target} exists; choose an empty --out folder")
        write_atomic(target, shift_image(path.read_bytes(), kind, seed=index))
    return len(files)
