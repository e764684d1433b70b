"""Labels that arrive after scoring: radiologists' reads, matched to the inference log.

Stored append-only, one Parquet object per `pneumo labels add` under `labels/`, nothing ever
rewritten: a later read of the same image supersedes an earlier one when labels are used,
and every read stays in the store. An image is named as the inference log records it, by its
sha256 (what a labels folder gives: films are told by content, as at scoring) or by its
`image` name. A label for an image never scored is kept and reported as unmatched: its
prediction may still arrive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.adapters.storage import ObjectStore
from pipeline.data.ingest import LABELS, Secret, no_secret
from pipeline.errors import PneumoError
from pipeline.predict.inference_log import append_inference_log, read_inference_log

LABELS_PREFIX = "labels"
COLUMNS = ["key", "key_kind", "label", "patient_id", "reader", "read_at", "added_at", "source"]
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_LISTED = 10  # bad rows named in one error


class LabelsError(PneumoError, ValueError):
    """Labels that cannot be stored as they are; nothing of them was written."""


def key_of(image: str) -> tuple[str, str]:
    """(key, kind): a 64-digit hex digest names the content, anything else the logged name."""
    text = image.strip()
    return (text.lower(), "sha256") if SHA256.match(text.lower()) else (text, "image")


def row_problems(row: dict[str, str]) -> list[str]:
    """What is wrong with one CSV row (empty when nothing)."""
    problems = []
    if not row["image"].strip():
        problems.append("no image")
    if row["label"].strip().upper() not in LABELS:
        problems.append(f"label {row['label']!r} is not {' or '.join(LABELS)}")
    read_at = row.get("read_at", "").strip()
    if read_at and pd.isna(pd.to_datetime(read_at, errors="coerce", utc=True)):
        problems.append(f"read_at {read_at!r} is not a date or time")
    return problems


def parse_labels_csv(path: Path, added_at: datetime) -> pd.DataFrame:
    """The rows of a labels CSV (`image`, `label`, optional `reader`, `read_at`, `patient`),
    every bad row named by its line; an error if any row is bad, so nothing is half-added."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise LabelsError(f"labels {path}: unreadable as CSV: {exc}") from None
    except pd.errors.EmptyDataError:
        raise LabelsError(f"labels {path}: empty file") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in ("image", "label") if c not in table.columns]
    if missing:
        raise LabelsError(
            f"labels {path}: no {' or '.join(missing)} column (columns: image, label, and "
            "optionally reader, read_at, patient)"
        )
    if table.empty:
        raise LabelsError(f"labels {path}: no rows")
    records = table.to_dict("records")
    bad = [
        (line, problems)
        for line, row in enumerate(records, start=2)
        if (problems := row_problems(row))
    ]
    if bad:
        listed = "; ".join(f"line {line}: {', '.join(p)}" for line, p in bad[:MAX_LISTED])
        more = f" (and {len(bad) - MAX_LISTED} more)" if len(bad) > MAX_LISTED else ""
        raise LabelsError(f"labels {path}: {len(bad)} bad rows, none added: {listed}{more}")
    keys = [key_of(row["image"]) for row in records]
    return label_rows(
        keys=keys,
        labels=[row["label"].strip().upper() for row in records],
        # Without a patient, each image is its own: intervals can then only be too narrow
        # where one child has several films.
        patients=[
            (row.get("patient") or "").strip() or key
            for row, (key, _) in zip(records, keys, strict=True)
        ],
        readers=[row.get("reader", "").strip() for row in records],
        read_at=[row.get("read_at", "").strip() for row in records],
        added_at=added_at,
        source=str(path),
    )


def label_rows(
    keys: list[tuple[str, str]],
    labels: list[str],
    patients: list[str],
    readers: list[str],
    read_at: list[str],
    added_at: datetime,
    source: str,
) -> pd.DataFrame:
    """Labels in the stored layout (`COLUMNS`)."""
    return pd.DataFrame(
        {
            "key": [key for key, _ in keys],
            "key_kind": [kind for _, kind in keys],
            "label": labels,
            "patient_id": patients,
            "reader": readers,
            "read_at": pd.to_datetime(pd.Series(read_at, dtype=str).replace("", None), utc=True),
            "added_at": pd.Timestamp(added_at),
            "source": source,
        },
        columns=COLUMNS,
    )


def folder_labels(
    folder: Path, max_pixels: int, added_at: datetime, patient_secret: Secret = no_secret
) -> pd.DataFrame:
    """`DIR/{NORMAL,PNEUMONIA}/` (one class is enough): each film labelled by its folder and
    named by its content digest, as scoring names it; its patient as ingest finds it."""
    from pipeline.monitor.site import SiteFilmsError, read_labelled_films

    try:
        films = read_labelled_films(folder, max_pixels, patient_secret, both_classes=False)
    except SiteFilmsError as exc:
        raise LabelsError(str(exc).replace("labelled films", "labels", 1)) from None
    rows = films.rows
    return label_rows(
        keys=[(digest, "sha256") for digest in rows["sha256"]],
        labels=rows["label"].tolist(),
        patients=rows["patient_id"].astype(str).tolist(),
        readers=[""] * len(rows),
        read_at=[""] * len(rows),
        added_at=added_at,
        source=str(folder),
    )


def store_labels(store: ObjectStore, labels: pd.DataFrame, now: datetime) -> str | None:
    """One new object with these labels; returns its key (None when there are none)."""
    return append_inference_log(store, labels, now, prefix=LABELS_PREFIX)


def read_labels(store: ObjectStore) -> pd.DataFrame:
    """Every stored read, oldest first (by read time where given, else by when it was added)."""
    every = read_inference_log(store, prefix=LABELS_PREFIX, sort_by="added_at")
    if every.empty:
        return pd.DataFrame(columns=COLUMNS)
    order = every["read_at"].fillna(every["added_at"])
    return (
        every.assign(_order=order)
        .sort_values(["_order", "added_at"], kind="stable")
        .drop(columns="_order")
    )


def current_labels(every: pd.DataFrame) -> pd.DataFrame:
    """The read in force for each image: the latest; earlier reads stay stored."""
    return every.drop_duplicates("key", keep="last").reset_index(drop=True)


def join_labels(log: pd.DataFrame, reads: pd.DataFrame) -> pd.DataFrame:
    """Scored rows that have a label: the log's columns plus `truth` (1 PNEUMONIA) and
    `patient_id`. An image scored more than once by a version counts once, with its latest
    score; of its reads (by digest or by name, `reads` may hold the history) the latest
    counts."""
    if log.empty or reads.empty:
        return pd.DataFrame()
    log = log.sort_values("timestamp", kind="stable")
    log = log.drop_duplicates(["model_version", "sha256"], keep="last")
    reads = reads.assign(read_order=reads["read_at"].fillna(reads["added_at"]))
    reads = reads.rename(columns={"label": "truth_label", "added_at": "read_added_at"})
    wanted = ["key", "truth_label", "patient_id", "read_order", "read_added_at"]
    pieces = [
        log.merge(reads[reads["key_kind"] == kind][wanted], left_on=column, right_on="key")
        for kind, column in (("sha256", "sha256"), ("image", "image"))
    ]
    joined = pd.concat(pieces, ignore_index=True)
    joined = joined.sort_values(["read_order", "read_added_at"], kind="stable")
    joined = joined.drop_duplicates(["model_version", "sha256"], keep="last")
    joined["truth"] = (joined["truth_label"] == "PNEUMONIA").astype(int)
    joined = joined.drop(columns=["key", "truth_label", "read_order", "read_added_at"])
    return joined.sort_values("timestamp", kind="stable").reset_index(drop=True)


def unmatched_labels(log: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Labels of images no logged row names (yet)."""
    if log.empty:
        return labels
    known = np.where(
        labels["key_kind"] == "sha256",
        labels["key"].isin(log["sha256"]),
        labels["key"].isin(log["image"]),
    )
    return labels[~known]


@dataclass(frozen=True)
class LabelsAdded:
    key: str | None  # the stored object
    added: int
    superseding: int  # reads of images that already had a label
    matched: int  # of the added, images the inference log has scored
    unmatched: list[str]  # keys of the added that no scored row names (yet)


def add_labels(
    store: ObjectStore,
    source: Path,
    max_pixels: int,
    patient_secret: Secret = no_secret,
    now: datetime | None = None,
) -> LabelsAdded:
    """Store the labels of a CSV file or a labels folder as one new object, and say how many
    replace earlier reads and how many name scored images."""
    now = now or datetime.now(UTC)
    if source.is_dir():
        new = folder_labels(source, max_pixels, now, patient_secret)
    elif source.is_file():
        new = parse_labels_csv(source, now)
    else:
        raise LabelsError(f"labels {source}: no such file or folder")
    earlier = read_labels(store)
    superseding = int(new["key"].isin(earlier["key"]).sum())
    key = store_labels(store, new, now)
    unmatched = unmatched_labels(read_inference_log(store), new)
    return LabelsAdded(
        key=key,
        added=len(new),
        superseding=superseding,
        matched=len(new) - len(unmatched),
        unmatched=unmatched["key"].tolist(),
    )
