"""What the prediction service does per request, as plain functions: check, predict, explain.

The HTTP layer (flows/service.py) only maps these to routes and status codes.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from pipeline.adapters.registry import CHAMPION
from pipeline.data.dicom import DicomError, film_pixels
from pipeline.data.images import inspect_image, not_an_image, sniff_format
from pipeline.data.scope import REASON_STARTS
from pipeline.errors import PneumoError
from pipeline.predict.champion import Champion
from pipeline.predict.scoring import predict_batch, rejection
from pipeline.settings import ScopeConfig
from pipeline.train.gradcam import gradcam, overlay_film
from pipeline.train.inputs import UndecodableImageError, input_spec, prepare_image


class BadImageError(PneumoError, ValueError):
    """An upload the service refuses, with the reason and the HTTP status to answer."""

    def __init__(
        self,
        name: str,
        reason: str,
        status: int = 422,
        bit_depth: int | None = None,
        out_of_scope: bool = False,  # a readable film outside the intended use (refuse mode)
    ) -> None:
        super().__init__(f"{name}: {reason}")
        self.name, self.reason, self.status, self.bit_depth = name, reason, status, bit_depth
        self.out_of_scope = out_of_scope

    def log_row(self, champion: Champion | None) -> pd.DataFrame:
        """The refusal as a rejected-log row, so the drift check counts it."""
        now = datetime.now(UTC)
        return pd.DataFrame([rejection(self.name, self.reason, self.bit_depth, champion, now)])


def check_upload(
    name: str, data: bytes, max_bytes: int, max_pixels: int
) -> tuple[bytes, dict[str, str]]:
    """The image the model will read and its DICOM scope tags (none for JPEG/PNG), or a refusal
    of what must never reach it: too large, empty, neither JPEG, PNG nor a renderable DICOM film,
    bombs, odd modes. A DICOM film is rendered to 8-bit PNG here (`pipeline.data.dicom`): only
    its pixels and the tags the intended-use check reads go further."""
    if len(data) > max_bytes:
        raise BadImageError(
            name, f"upload is {len(data)} bytes, over the {max_bytes}-byte limit", 413
        )
    if not data:
        raise BadImageError(name, "empty file (0 bytes)")
    try:
        data, tags = film_pixels(data, max_pixels)
    except DicomError as exc:
        raise BadImageError(name, f"DICOM: {exc}") from None
    if sniff_format(data) is None:
        raise BadImageError(name, not_an_image(data), 415)
    info = inspect_image(data, max_pixels)
    if info.issue is not None:
        raise BadImageError(name, info.issue, bit_depth=info.bit_depth)
    return data, tags


def predict_uploads(
    champion: Champion,
    items: list[tuple[str, bytes]],
    max_pixels: int,
    model_lock: AbstractContextManager,
    scope_cfg: ScopeConfig,
    tags: Sequence[dict[str, str]] | None = None,
) -> tuple[pd.DataFrame, list[dict]]:
    """Predictions with drift features (for the log) and the per-image response bodies, each
    saying whether the film is within the intended use and, if not, why (`tags`: each upload's
    DICOM scope tags, from `check_upload`). Under PNEUMO_SCOPE__MODE=refuse such a film is
    refused instead.

    Only the model call holds `model_lock`; decoding and drift features run beside other
    requests.
    """
    start = time.perf_counter()
    predictions, rejected = predict_batch(
        champion, items, max_pixels, model_lock=model_lock, scope_cfg=scope_cfg, tags=tags
    )
    # Passed the upload check, refused by the decoder or (refuse mode) the intended-use check,
    # told apart by how the reason starts.
    for refused in rejected.itertuples():
        outside = refused.issue.startswith(REASON_STARTS)
        raise BadImageError(refused.image, refused.issue, out_of_scope=outside)
    latency_ms = round(1000 * (time.perf_counter() - start), 1)
    bodies = [
        {
            "image": row.image,
            "probability": float(row.probability),
            "label": row.label,
            "threshold": champion.threshold,
            "model": champion.name,
            "version": champion.version,
            "alias": CHAMPION,
            "in_scope": bool(row.in_scope),
            "scope_reasons": row.scope_reasons.split("; ") if row.scope_reasons else [],
            "latency_ms": latency_ms,
        }
        for row in predictions.itertuples()
    ]
    return predictions, bodies


def explain_upload(
    champion: Champion,
    name: str,
    data: bytes,
    max_side: int,
    model_lock: AbstractContextManager,
) -> tuple[bytes, np.ndarray]:
    """Grad-CAM overlay as PNG, at most `max_side` px on its longest side, and the heatmap at
    the model's input resolution.

    Both are bounded whatever the upload: a 40 Mpx film gives a 1,024 px overlay (decoded
    reduced, for JPEG) and a 224 x 224 heatmap, not a 40 Mpx PNG and a 40-million-value JSON.
    Only Grad-CAM's model passes hold `model_lock`.
    """
    from PIL import Image

    try:
        prepared = prepare_image(data, input_spec(champion.model))
    except UndecodableImageError as exc:  # passed the upload check, refused by the decoder
        raise BadImageError(name, str(exc)) from None
    with model_lock:
        heatmap = gradcam(champion.model, prepared)
    buffer = io.BytesIO()
    Image.fromarray(overlay_film(data, heatmap, max_side)).save(buffer, "PNG")
    return buffer.getvalue(), heatmap
