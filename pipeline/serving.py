"""What the prediction service needs, as plain functions: upload checks, a swappable champion.

The HTTP layer (flows/service.py) only maps these to routes and status codes.
"""

from __future__ import annotations

import io
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.gradcam import gradcam, overlay
from pipeline.images import inspect_image
from pipeline.inputs import prepare_image
from pipeline.monitoring import Champion, append_inference_log, predict_batch
from pipeline.registry import CHAMPION
from pipeline.storage import ObjectStore

PNG_OR_JPEG = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


class BadImageError(ValueError):
    """An upload the service refuses, with the reason and the HTTP status to answer."""

    def __init__(self, name: str, reason: str, status: int = 422) -> None:
        super().__init__(f"{name}: {reason}")
        self.name, self.reason, self.status = name, reason, status


def check_upload(name: str, data: bytes, max_bytes: int, max_pixels: int) -> None:
    """Refuse what must never reach the model: too large, empty, not JPEG/PNG, bombs, odd modes."""
    if len(data) > max_bytes:
        raise BadImageError(
            name, f"upload is {len(data)} bytes, over the {max_bytes}-byte limit", 413
        )
    if not data:
        raise BadImageError(name, "empty file (0 bytes)")
    if not data.startswith(PNG_OR_JPEG):
        raise BadImageError(name, "not a JPEG or PNG image", 415)
    issue = inspect_image(data, max_pixels).issue
    if issue is not None:
        raise BadImageError(name, issue)


@dataclass
class ChampionHolder:
    """The serving champion; `refresh` swaps in a new version in one assignment.

    A request reads `current` once and uses that object throughout, so it is served wholly by
    one version even if a swap happens meanwhile.
    """

    load: Callable[[], Champion]
    resolve_version: Callable[[], str | None]
    current: Champion | None = None
    last_error: str | None = None

    def refresh(self) -> bool:
        """Load the champion if the alias points elsewhere; True when a new version came in."""
        try:
            version = self.resolve_version()
            if version is None or (self.current is not None and self.current.version == version):
                return False
            self.current = self.load()
            self.last_error = None
            return True
        except Exception as exc:  # keep serving the old version; report on /health
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False

    def poll(self, interval_seconds: float, stop: threading.Event) -> None:
        while not stop.wait(interval_seconds):
            self.refresh()


def predict_uploads(
    champion: Champion, items: list[tuple[str, bytes]], max_pixels: int
) -> tuple[pd.DataFrame, list[dict]]:
    """Predictions with drift features (for the log) and the per-image response bodies."""
    start = time.perf_counter()
    predictions, _ = predict_batch(champion, items, max_pixels)
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
            "latency_ms": latency_ms,
        }
        for row in predictions.itertuples()
    ]
    return predictions, bodies


def explain_upload(champion: Champion, data: bytes) -> tuple[bytes, np.ndarray]:
    """Grad-CAM overlay as PNG at the upload's own size, and the heatmap at that size."""
    from PIL import Image

    size = int(champion.model.inputs[0].shape[1])
    heatmap = gradcam(champion.model, prepare_image(data, size))
    original = Image.open(io.BytesIO(data)).convert("L")
    resized = (
        np.asarray(
            Image.fromarray((heatmap * 255).astype(np.uint8)).resize(original.size, Image.BILINEAR)
        )
        / 255.0
    )
    blended = overlay(np.asarray(original, dtype=np.float32)[..., None], resized)
    buffer = io.BytesIO()
    Image.fromarray(blended).save(buffer, "PNG")
    return buffer.getvalue(), resized


@dataclass
class InferenceLogWriter:
    """Appends predictions to the inference log from a background thread, off the request path."""

    store: ObjectStore
    pending: queue.Queue = field(default_factory=queue.Queue)
    written: int = 0
    errors: list[str] = field(default_factory=list)

    def submit(self, predictions: pd.DataFrame) -> None:
        if not predictions.empty:
            self.pending.put(predictions)

    def run(self, stop: threading.Event, max_wait_seconds: float = 1.0) -> None:
        """Write everything queued, batching what arrived together, until stopped and drained."""
        while not (stop.is_set() and self.pending.empty()):
            try:
                batch = [self.pending.get(timeout=max_wait_seconds)]
            except queue.Empty:
                continue
            while not self.pending.empty():
                batch.append(self.pending.get_nowait())
            try:
                append_inference_log(self.store, pd.concat(batch, ignore_index=True))
                self.written += sum(len(b) for b in batch)
            except Exception as exc:  # a failed write must not kill the writer
                self.errors.append(f"{type(exc).__name__}: {exc}")
