"""Data steps as the CLI and the flows call them: ingest a folder, validate a manifest.

Each step is a plain function over a store and config objects and returns a small summary record;
the callers decide what to print, log or fail on.
"""

from __future__ import annotations

import functools
import os
import secrets
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.adapters.storage import ObjectStore
from pipeline.data.explore import class_counts, plot_class_distribution, plot_sample_grid
from pipeline.data.ingest import (
    discover_files,
    film_identity,
    ingest_folder,
    resolve_dataset_root,
)
from pipeline.data.manifest import (
    load_manifest,
    patients_across_official_splits,
    quarantine_report,
    save_manifest,
)
from pipeline.data.split import assign_splits, labeled_left_out, merge_labeled
from pipeline.data.validation import ValidationReport, validate_manifest
from pipeline.errors import PneumoError
from pipeline.files import read_listed
from pipeline.progress import Progress, silent
from pipeline.settings import Settings


class DataValidationError(PneumoError, RuntimeError):
    """Critical data checks failed; training does not start."""


@dataclass(frozen=True)
class IngestSummary:
    manifest_id: str
    manifest_is_new: bool
    stored: int
    already_stored: int
    counts: pd.DataFrame
    quarantine: pd.DataFrame
    quarantine_uri: str
    shared_patients: pd.DataFrame


def patient_secret(settings: Settings) -> str:
    """The secret that keys DICOM patients: PNEUMO_PATIENT_KEY_SECRET, else one generated on
    first need into the state directory (0600). Keys stay stable only while the secret does:
    every host ingesting into one store must share it (compose passes one)."""
    given = settings.patient_key_secret.get_secret_value()
    if given:
        return given
    path = settings.home / "patient_key_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".patient_key_secret.")
        with os.fdopen(fd, "w") as out:  # mkstemp: 0600 from the start
            out.write(secrets.token_hex(32))
        # A link never replaces: if another process or thread won the race, its secret stays.
        with suppress(FileExistsError):
            os.link(tmp, path)
        Path(tmp).unlink()
    return path.read_text().strip()


def ingest_dataset(
    path: Path,
    store: ObjectStore,
    settings: Settings,
    progress: Progress = silent,
) -> IngestSummary:
    """Ingest `path`, assign splits by patient, store the manifest and the quarantine report."""
    secret = functools.partial(patient_secret, settings)  # read only if a DICOM film comes
    result = ingest_folder(path, store, settings.ingest, progress, secret, settings.scope)
    manifest = assign_splits(result.manifest, settings.split)
    version, is_new = save_manifest(store, manifest)
    quarantine = quarantine_report(manifest)
    quarantine_key = f"reports/{version}/quarantine.csv"
    store.put(quarantine_key, quarantine.to_csv(index=False).encode())
    return IngestSummary(
        manifest_id=version,
        manifest_is_new=is_new,
        stored=result.stored,
        already_stored=result.already_stored,
        counts=class_counts(manifest),
        quarantine=quarantine,
        quarantine_uri=store.uri(quarantine_key),
        shared_patients=patients_across_official_splits(manifest),
    )


@dataclass(frozen=True)
class ValidationSummary:
    manifest_id: str
    report: ValidationReport
    counts: pd.DataFrame
    figures: list[Path]


def validate_dataset(
    store: ObjectStore, settings: Settings, version: str | None = None
) -> ValidationSummary:
    """Validate a stored manifest (default: the latest) and write Data Docs and exploration PNGs.

    Everything lands in `reports/validation/<manifest id>/`, so earlier versions' reports stay.
    """
    version, manifest = load_manifest(store, version)
    out_dir = settings.reports_dir / "validation" / version
    report = validate_manifest(manifest, settings.validation, out_dir / "data_docs")
    counts = class_counts(manifest)
    figures = [
        plot_class_distribution(counts, out_dir / "class_distribution.png"),
        plot_sample_grid(manifest, store, out_dir / "sample_grid.png", seed=settings.split.seed),
    ]
    return ValidationSummary(manifest_id=version, report=report, counts=counts, figures=figures)


def require_valid(summary: ValidationSummary) -> ValidationSummary:
    """The summary if no critical check failed, else a DataValidationError naming the failures."""
    if summary.report.success:
        return summary
    failed = "; ".join(
        f"{c.description}: {', '.join(c.examples[:3])}" for c in summary.report.failures
    )
    count = len(summary.report.failures)
    raise DataValidationError(
        f"manifest {summary.manifest_id}: {count} critical data checks failed: {failed}"
    )


@dataclass(frozen=True)
class LabeledSummary:
    manifest_id: str
    added: int
    left_out: pd.DataFrame


def count_new_labeled(path: Path, store: ObjectStore, settings: Settings) -> int:
    """How many images under `path` `add_labeled` would add (unseen bytes, patients outside
    val/test). Read-only: a drift check decides on it without ingesting anything."""
    if not path.is_dir() or not any(p.is_file() for p in path.rglob("*")):
        return 0  # no inbox yet, or an empty one: the normal state between labelling rounds
    readable = [
        (source, data)
        for source in discover_files(resolve_dataset_root(path))
        if (data := read_listed(source.path)[0]) is not None  # links never join
    ]
    secret = functools.partial(patient_secret, settings)
    identities = [
        film_identity(s.path.name, data, settings.ingest.max_pixels, secret, s.patient_scope)
        for s, data in readable
    ]
    labeled = pd.DataFrame(
        {
            "path": [str(s.path) for s, _ in readable],
            "patient_id": [patient for patient, _ in identities],
            "sha256": [digest for _, digest in identities],
        }
    )
    _, manifest = load_manifest(store)
    return int(labeled_left_out(manifest, labeled).isna().sum())


def add_labeled(path: Path, store: ObjectStore, settings: Settings) -> LabeledSummary:
    """Ingest newly labelled images (Kaggle layout) into the latest manifest's train split."""
    secret = functools.partial(patient_secret, settings)
    labeled = ingest_folder(
        path, store, settings.ingest, patient_secret=secret, scope_cfg=settings.scope
    ).manifest
    usable = labeled[~labeled["quarantined"]]
    _, manifest = load_manifest(store)
    merged, left_out = merge_labeled(
        manifest, usable, settings.site.judge_fraction, settings.split.seed
    )
    version, _ = save_manifest(store, merged)
    return LabeledSummary(version, len(merged) - len(manifest), left_out)
