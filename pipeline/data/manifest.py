"""The manifest: one row per ingested file, stored as Parquet and versioned by its own hash.

The version id hashes the table's content (not the Parquet bytes, which carry writer metadata), so
ingesting the same folder twice yields the same id and stores nothing new.
"""

from __future__ import annotations

import hashlib
import io

import pandas as pd

from pipeline.adapters.storage import ObjectNotFoundError, ObjectStore
from pipeline.data.ingest import MANIFEST_COLUMNS

MANIFEST_PREFIX = "manifests"
LATEST_KEY = f"{MANIFEST_PREFIX}/LATEST"
_INTEGER_COLUMNS = ("bytes", "width", "height", "channels", "bit_depth")
_STRING_COLUMNS = (
    "path", "key", "label", "source_split", "split", "patient_id", "subtype", "sha256", "issue",
    "mode", "origin",
)  # fmt: skip


def normalize_manifest(frame: pd.DataFrame) -> pd.DataFrame:
    """Fixed column order, dtypes and row order, so equal content always serialises equally."""
    out = frame.reindex(columns=list(MANIFEST_COLUMNS)).copy()
    for column in _INTEGER_COLUMNS:
        out[column] = out[column].astype("Int64")
    for column in _STRING_COLUMNS:
        out[column] = out[column].astype("string")
    for column in ("decodable", "quarantined"):
        out[column] = out[column].astype(bool)
    for column in ("mean", "std"):
        out[column] = out[column].astype("float64")
    return out.sort_values("path", kind="stable").reset_index(drop=True)


def manifest_id(frame: pd.DataFrame) -> str:
    """16 hex characters of the sha256 of the normalised table's CSV form."""
    canonical = normalize_manifest(frame).to_csv(index=False, float_format="%.6g")
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def save_manifest(store: ObjectStore, frame: pd.DataFrame) -> tuple[str, bool]:
    """Store the manifest under its id and point LATEST at it; returns (id, newly_written)."""
    version = manifest_id(frame)
    buffer = io.BytesIO()
    normalize_manifest(frame).to_parquet(buffer, index=False)
    key = f"{MANIFEST_PREFIX}/{version}.parquet"
    is_new = not store.exists(key) and store.put(key, buffer.getvalue())
    store.put(LATEST_KEY, version.encode(), overwrite=True)
    return version, is_new


def latest_manifest_id(store: ObjectStore) -> str:
    try:
        return store.get(LATEST_KEY).decode().strip()
    except ObjectNotFoundError:
        raise ObjectNotFoundError(
            "no manifest has been ingested yet: run `pneumo ingest PATH` first"
        ) from None


def load_manifest(store: ObjectStore, version: str | None = None) -> tuple[str, pd.DataFrame]:
    """The manifest with id `version` (default: the latest); returns (id, frame)."""
    version = version or latest_manifest_id(store)
    data = store.get(f"{MANIFEST_PREFIX}/{version}.parquet")
    return version, pd.read_parquet(io.BytesIO(data))


def quarantine_report(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows that cannot be used for training, with the reason."""
    columns = ["path", "key", "label", "source_split", "bytes", "issue"]
    return frame.loc[frame["quarantined"], columns].reset_index(drop=True)


def patients_across_official_splits(frame: pd.DataFrame) -> pd.DataFrame:
    """Patient ids that occur in more than one official split (reported, not failed)."""
    per_patient = frame.groupby("patient_id")["source_split"].agg(lambda s: sorted(set(s)))
    shared = per_patient[per_patient.map(len) > 1]
    return shared.rename("source_splits").reset_index()
