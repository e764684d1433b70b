"""Decode-and-describe raw image bytes without trusting them.

Every failure becomes a reason string in the returned record, never an exception: ingest must list
bad files, not crash on them or drop them.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.data.dicom import is_dicom

ACCEPTED_MODES = frozenset({"L", "RGB"})
# With an alpha band: accepted when it is fully opaque (an export that added alpha changes
# nothing a reader sees), read as the gray or RGB bands beside it; the value is how many.
ALPHA_MODES = {"LA": 1, "RGBA": 3}
# Formats are told by their first bytes, never by the file name: a JPEG called `blob` or
# `film.jfif` is a JPEG, and a DICOM file called `film.png` is not a PNG.
MAGIC = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png"}
SUFFIX = {"jpeg": ".jpeg", "png": ".png"}
BIT_DEPTH = {"1": 1, "L": 8, "P": 8, "RGB": 8, "RGBA": 8, "LA": 8, "CMYK": 8, "YCbCr": 8}
# Statistics are taken on a reduced decode: exact enough for data checks and drift, and several
# times faster than a full decode of a 3000 px JPEG.
STATS_SIDE = 512


@dataclass(frozen=True)
class ImageInfo:
    """What ingest records about one file; `issue` is None for a usable image."""

    decodable: bool
    issue: str | None = None
    format: str | None = None  # "jpeg" or "png", from the content
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    channels: int | None = None
    bit_depth: int | None = None
    mean: float | None = None
    std: float | None = None


def bit_depth_of(mode: str) -> int:
    if mode.startswith("I;16"):
        return 16
    return BIT_DEPTH.get(mode, 32)


def sniff_format(data: bytes) -> str | None:
    """'jpeg' or 'png' from the content's first bytes; None for anything else."""
    return next((name for magic, name in MAGIC.items() if data.startswith(magic)), None)


def not_an_image(data: bytes) -> str:
    """Why content that is neither JPEG nor PNG is refused. DICOM films are rendered to PNG
    before they get here (`pipeline.data.dicom`); one that reaches this check was not."""
    if is_dicom(data):
        return "a DICOM file, not a JPEG or PNG image: render it first (pipeline.data.dicom)"
    return "not a JPEG, PNG or DICOM image"


def inspect_image(data: bytes, max_pixels: int) -> ImageInfo:
    """Describe `data`; sets `issue` for empty, non-JPEG/PNG, undecodable, oversized or
    unexpected-mode content (judged on the bytes, whatever the file is called)."""
    if not data:
        return ImageInfo(decodable=False, issue="empty file (0 bytes)")
    image_format = sniff_format(data)
    if image_format is None:
        return ImageInfo(decodable=False, issue=not_an_image(data))
    try:
        with warnings.catch_warnings():
            # PIL warns (and past 2x its own limit raises) on huge images; we apply our own limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            mode = image.mode
    except Image.DecompressionBombError as exc:
        return ImageInfo(decodable=False, issue=f"decompression bomb: {exc}")
    except UnidentifiedImageError:
        return ImageInfo(decodable=False, issue="not a decodable image: unknown format")
    except (OSError, ValueError, SyntaxError) as exc:
        return ImageInfo(decodable=False, issue=f"not a decodable image: {exc}")
    header = {
        "format": image_format,
        "width": width,
        "height": height,
        "mode": mode,
        "channels": Image.getmodebands(mode),
        "bit_depth": bit_depth_of(mode),
    }
    if width * height > max_pixels:
        issue = f"decompression bomb: {width}x{height} = {width * height} pixels > {max_pixels}"
        return ImageInfo(decodable=False, issue=issue, **header)
    try:
        mean, std = _pixel_stats(image)
    except (OSError, ValueError, SyntaxError) as exc:
        return ImageInfo(decodable=False, issue=f"truncated or corrupt image data: {exc}", **header)
    return ImageInfo(True, mode_issue(image, header), mean=mean, std=std, **header)


def mode_issue(image: Image.Image, header: dict) -> str | None:
    """Why a decoded image's mode is refused, or None: 8-bit L or RGB, or either with a fully
    opaque alpha band. Real transparency is refused: what it hides depends on the background
    a viewer draws, so the pixels alone are not the film a reader saw."""
    mode = image.mode
    if mode in ACCEPTED_MODES:
        return None
    if mode in ALPHA_MODES:
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() == 255:
            return None
        share = float((alpha < 255).mean())
        return (
            f"translucent {mode} image: {share:.1%} of pixels have alpha below 255 (lowest "
            f"{int(alpha.min())}); an X-ray exported with an opaque alpha band is accepted"
        )
    return (
        f"unsupported mode {mode!r} ({header['bit_depth']}-bit, {header['channels']} bands); "
        "expected 8-bit L or RGB"
    )


def _pixel_stats(image: Image.Image) -> tuple[float, float]:
    """Mean and std of intensity on a 0-255 scale, whatever the mode; forces a full decode."""
    image.draft("L", (STATS_SIDE, STATS_SIDE))  # JPEG only: DCT-domain downscale while decoding
    image.load()
    pixels = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I"):
        pixels = pixels * (255.0 / 65535.0)
    elif image.mode == "1":
        pixels = pixels * 255.0
    if pixels.ndim == 3:  # the colour bands only: never alpha
        pixels = pixels[..., : ALPHA_MODES.get(image.mode, 3)].mean(axis=-1)
    return float(pixels.mean()), float(pixels.std())
