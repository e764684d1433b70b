"""Batch inference: read images from a folder or a store prefix and score them with the champion.

Bad images are listed with the reason and skipped, never scored; every scored image carries the
drift features the monitoring compares with the champion's reference profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.adapters.storage import ObjectStore, sha256_hex
from pipeline.data.dicom import DicomError, film_pixels
from pipeline.data.images import inspect_image
from pipeline.data.scope import scope_reasons, tag_reasons
from pipeline.files import listed_entries, read_listed
from pipeline.predict.champion import Champion
from pipeline.predict.drift_features import feature_table
from pipeline.predict.probe import NO_LOCK, probe_images
from pipeline.progress import Progress, silent
from pipeline.settings import ScopeConfig

Items = list[tuple[str, bytes]]
Unread = list[tuple[str, str]]


def read_images(source: str, store: ObjectStore) -> tuple[Items, Unread]:
    """(name, bytes) for every file under a local folder, else under a store prefix; and
    (name, reason) for the folder's entries not read (links, special files, unreadable)."""
    folder = Path(source)
    if folder.is_dir():
        items: Items = []
        unread: Unread = []
        for path in listed_entries(folder):
            name = path.relative_to(folder).as_posix()
            data, reason = read_listed(path)
            if data is None:
                unread.append((name, reason or "not read"))
            else:
                items.append((name, data))
        return items, unread
    if folder.exists():  # a file named on purpose is read as named
        return [(folder.name, folder.read_bytes())], []
    keys = store.list(source)
    if not keys:
        raise FileNotFoundError(
            f"{source!r} is neither a folder nor a non-empty object-store prefix"
        )
    return [(key, store.get(key)) for key in keys], []


def predict_batch(
    champion: Champion,
    items: list[tuple[str, bytes]],
    max_pixels: int,
    now: datetime | None = None,
    progress: Progress = silent,
    unread: Sequence[tuple[str, str]] = (),
    model_lock: AbstractContextManager = NO_LOCK,
    scope_cfg: ScopeConfig | None = None,
    tags: Sequence[dict[str, str]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions with drift features, rejected images with the reason) for a batch.

    Images are told by their content, whatever they are called. `unread`: entries of the
    source that were never read, rejected with their reason. Both tables carry the model and
    time, so each can be logged (see `inference_log`). `model_lock`: held around model calls
    only (the service's; see `probe_images`). `scope_cfg`: the intended-use rules (defaults
    when None); under its `refuse` mode a film outside the use is rejected, not scored.
    `tags`: per item, DICOM scope tags read before it was rendered (the service renders on
    upload), else they are read here.
    """
    now = now or datetime.now(UTC)
    scope_cfg = scope_cfg or ScopeConfig()
    rejected = [rejection(name, reason, None, champion, now) for name, reason in unread]
    good, findings = [], []
    for index, (name, data) in enumerate(items):
        try:  # a DICOM film's rendered pixels and scope tags only: no other tag is read
            data, found = film_pixels(data, max_pixels)
        except DicomError as exc:
            rejected.append(rejection(name, f"DICOM: {exc}", None, champion, now))
            continue
        info = inspect_image(data, max_pixels)
        if info.issue:
            rejected.append(rejection(name, info.issue, info.bit_depth, champion, now))
        else:
            good.append((name, data))
            findings.append(tag_reasons(found or (tags[index] if tags else {}), scope_cfg))
    probabilities, embeddings, undecodable = probe_images(
        champion.probe, [data for _, data in good], progress=progress, model_lock=model_lock
    )
    for index, reason in undecodable.items():
        rejected.append(rejection(good[index][0], reason, None, champion, now))
    good = [item for index, item in enumerate(good) if index not in undecodable]
    findings = [found for index, found in enumerate(findings) if index not in undecodable]
    images = [data for _, data in good]
    features = (
        feature_table(images, embeddings, probabilities, champion.projection, progress)
        if good
        else pd.DataFrame()
    )
    predictions = pd.DataFrame(
        {
            "image": [name for name, _ in good],
            "sha256": [sha256_hex(data) for data in images],
            "probability": probabilities,
            "label": ["PNEUMONIA" if p >= champion.threshold else "NORMAL" for p in probabilities],
            "threshold": champion.threshold,
            "model_name": champion.name,
            "model_version": champion.version,
            "alias": champion.alias,
            "timestamp": pd.Timestamp(now),
        }
    )
    if good:
        predictions = pd.concat([predictions, features.drop(columns=["probability"])], axis=1)
        columns = scope_columns(images, embeddings, champion, findings)
        predictions = predictions.assign(**columns)
        if scope_cfg.mode == "refuse":  # no label for a film outside the intended use
            outside = ~predictions["in_scope"]
            for row in predictions[outside].itertuples():
                rejected.append(rejection(row.image, row.scope_reasons, None, champion, now))
            predictions = predictions[~outside].reset_index(drop=True)
    return predictions, pd.DataFrame(rejected, columns=REJECTED_COLUMNS)


def scope_columns(
    images: list[bytes], embeddings: np.ndarray, champion: Champion, findings: list[list[str]]
) -> dict:
    """`ood_distance`, `in_scope` and `scope_reasons` ("; "-joined, "" when in scope) per film;
    `findings`: what each film's DICOM tags said."""
    distances, reasons = scope_reasons(images, embeddings, champion.scope, findings)
    return {
        "ood_distance": distances,
        "in_scope": [not found for found in reasons],
        "scope_reasons": ["; ".join(found) for found in reasons],
    }


REJECTED_COLUMNS = ["image", "issue", "bit_depth", "model_name", "model_version", "timestamp"]


def rejection(
    name: str, issue: str, bit_depth: int | None, champion: Champion | None, now: datetime
) -> dict:
    """One rejected-log row: the image, why it was refused, and who refused it when."""
    return {
        "image": name,
        "issue": issue,
        "bit_depth": float("nan") if bit_depth is None else float(bit_depth),
        "model_name": champion.name if champion else None,
        "model_version": champion.version if champion else None,
        "timestamp": pd.Timestamp(now),
    }
