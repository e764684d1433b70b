"""Scoring as the CLI calls it: the films under a folder, file or store prefix, scored by the
champion, logged, and written to a CSV."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.adapters.registry import Registry
from pipeline.adapters.storage import ObjectStore
from pipeline.files import atomic_path
from pipeline.predict.champion import Champion, load_champion
from pipeline.predict.inference_log import REJECTED_PREFIX, append_inference_log
from pipeline.predict.scoring import predict_batch, read_images
from pipeline.progress import Progress, silent
from pipeline.settings import Settings

PREDICTION_COLUMNS = [
    "image", "probability", "label", "threshold", "model_name", "model_version", "in_scope",
    "scope_reasons",
]  # fmt: skip


def champion_cache(settings: Settings) -> Path:
    """Where downloaded reference profiles of champions are kept between calls."""
    return settings.cache_dir / "champions"


@dataclass(frozen=True)
class BatchPrediction:
    champion: Champion
    predictions: pd.DataFrame
    rejected: pd.DataFrame
    log_uri: str | None
    csv_path: Path


def predict_source(
    source: str,
    store: ObjectStore,
    registry: Registry,
    settings: Settings,
    out: Path | None,
    progress: Progress = silent,
) -> BatchPrediction:
    """Score every image under a folder, file or store prefix with the champion.

    The scored rows go to the inference log and to a CSV (`out`, default under the reports);
    the refused ones to the rejected log.
    """
    items, unread = read_images(source, store)  # first: a wrong path is named before any champion
    champion = load_champion(registry, champion_cache(settings))
    predictions, rejected = predict_batch(
        champion,
        items,
        settings.ingest.max_pixels,
        progress=progress,
        unread=unread,
        scope_cfg=settings.scope,
    )
    log_key = append_inference_log(store, predictions)
    append_inference_log(store, rejected, prefix=REJECTED_PREFIX)
    out = out or settings.reports_dir / "predictions" / f"{time.strftime('%Y%m%dT%H%M%S')}.csv"
    with atomic_path(out) as tmp:
        predictions.reindex(columns=PREDICTION_COLUMNS).to_csv(tmp, index=False)
    log_uri = store.uri(log_key) if log_key else None
    return BatchPrediction(champion, predictions, rejected, log_uri, out)
