"""Acquisition and handling changes applied to real X-rays: the drift the monitoring is built
to catch, and the shifts the model card measures the model under."""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter

DriftKind = Literal[
    "none", "contrast", "blur", "noise", "brightness", "inverted", "rotated", "cropped"
]
DRIFT_KINDS: tuple[str, ...] = DriftKind.__args__


def shift_image(data: bytes, kind: DriftKind, seed: int = 0, strength: float = 1.0) -> bytes:
    """The image with one acquisition or handling change applied, re-encoded as JPEG.

    `strength` scales the change (1: the demo's; the drift benchmark also uses 1/3 and 2/3).
    """
    image = Image.open(io.BytesIO(data)).convert("L")
    s = strength
    if kind == "contrast":  # a washed-out film: intensities squeezed towards grey
        image = image.point(lambda v: int(128 + (v - 128) * (1 - 0.65 * s)))
    elif kind == "blur":  # an out-of-focus detector
        image = image.filter(ImageFilter.GaussianBlur(radius=s * max(image.size) / 150))
    elif kind == "noise":  # a low-dose, noisy acquisition
        pixels = np.asarray(image, dtype=np.float64)
        pixels += np.random.default_rng(seed).normal(0, 45 * s, pixels.shape)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    elif kind == "brightness":  # over-exposure
        image = image.point(lambda v: min(255, int(v * (1 + 0.5 * s) + 40 * s)))
    elif kind == "inverted":  # a film exported with the other photometric interpretation
        image = image.point(lambda v: int(v + s * (255 - 2 * v)))
    elif kind == "rotated":  # a film scanned or hung at an angle
        image = image.rotate(15 * s, resample=Image.Resampling.BILINEAR, fillcolor=0)
    elif kind == "cropped":  # collimated tighter, or cropped by a viewer: the centre, rescaled
        width, height = image.size
        keep = 1 - 0.3 * s
        box = (
            round(width * (1 - keep) / 2),
            round(height * (1 - keep) / 2),
            round(width * (1 + keep) / 2),
            round(height * (1 + keep) / 2),
        )
        image = image.resize(image.size, Image.Resampling.BILINEAR, box=box)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()
