"""The inference log: append-only, one Parquet object per scored batch.

Each batch is a new object under `inference-log/date=YYYY-MM-DD/`, one row per scored image with
its probability, label, model version and drift features; nothing is ever rewritten. Images
refused at prediction (unreadable, 16-bit, ...) go to `rejected-log/` the same way, one row each
with the reason, so the drift check's data-quality signal counts what the model never saw.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pandas as pd

from pipeline.adapters.storage import ObjectStore, sha256_hex

LOG_PREFIX = "inference-log"
REJECTED_PREFIX = "rejected-log"
# The newest drift check's summary, whatever its result: what the service's /metrics shows,
# with its verdict one of these.
LAST_CHECK_KEY = "reports/drift/last-check.json"
DRIFT = "drift detected"  # image shift: the retraining trigger
PREVALENCE = "prevalence shift"  # the class mix alone changed: an alert
NO_DRIFT = "no drift"
INSUFFICIENT = "insufficient data"


def parquet_bytes(table: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    return buffer.getvalue()


def log_object(
    predictions: pd.DataFrame,
    now: datetime | None = None,
    prefix: str = LOG_PREFIX,
    name: str | None = None,
) -> tuple[str, bytes]:
    """A batch as the object that holds it: a key in the day's partition, named by its content
    (so writing it twice is harmless) or by `name`, and its Parquet bytes."""
    now = now or datetime.now(UTC)
    data = parquet_bytes(predictions)
    stem = name or f"{now:%H%M%S%f}-{sha256_hex(data)[:12]}"
    return f"{prefix}/date={now:%Y-%m-%d}/{stem}.parquet", data


def append_inference_log(
    store: ObjectStore,
    predictions: pd.DataFrame,
    now: datetime | None = None,
    prefix: str = LOG_PREFIX,
    name: str | None = None,
) -> str | None:
    """Write a batch as a new object in today's partition; returns its key (None if empty).
    A `name`d object (a batch job's shard) is replaced when written again: a retried shard
    replaces its rows instead of adding them twice."""
    if predictions.empty:
        return None
    key, data = log_object(predictions, now, prefix, name)
    store.put(key, data, overwrite=name is not None)
    return key


def read_inference_log(
    store: ObjectStore,
    model_version: str | None = None,
    days: int | None = None,
    last_n: int | None = None,
    now: datetime | None = None,
    prefix: str = LOG_PREFIX,
    sort_by: str = "timestamp",
) -> pd.DataFrame:
    """Logged rows, newest last (by `sort_by`), optionally of one model version and a time
    window."""
    now = now or datetime.now(UTC)
    keys = store.list(f"{prefix}/")
    if days is not None:
        first = (now - timedelta(days=days)).strftime("%Y-%m-%d")
        keys = [k for k in keys if k.split("date=")[1][:10] >= first]
    if not keys:
        return pd.DataFrame()
    frame = pd.concat([pd.read_parquet(io.BytesIO(store.get(k))) for k in keys], ignore_index=True)
    if model_version is not None:
        frame = frame[frame["model_version"].astype(str) == str(model_version)]
    if days is not None:
        frame = frame[frame[sort_by] >= pd.Timestamp(now - timedelta(days=days))]
    frame = frame.sort_values(sort_by, kind="stable")
    return frame.tail(last_n) if last_n else frame
