"""Monitoring steps as the CLI and the flows call them: score a batch, profile, check drift.

Each step takes a store, a registry and settings and returns a small record; callers decide what
to print, log or trigger.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from pipeline.adapters.registry import CHALLENGER, CHAMPION, Reference, Registry, RegistryError
from pipeline.adapters.storage import ObjectStore
from pipeline.data.scope import ScopeModel, fit_scope, scope_reasons
from pipeline.data.steps import patient_secret
from pipeline.monitor.compare import (
    ShadowComparison,
    compare_shadow,
    explain_disagreements,
    find_films,
    store_comparison,
)
from pipeline.monitor.drift import DriftResult, check_drift, classification_report_html
from pipeline.monitor.labels import LabelsAdded, add_labels
from pipeline.monitor.performance import (
    PerformanceCheck,
    check_performance,
    store_performance_check,
)
from pipeline.predict.champion import MONITORED_MODEL, Champion, load_champion
from pipeline.predict.drift_features import feature_table, fit_projection
from pipeline.predict.inference_log import (
    LAST_CHECK_KEY,
    REJECTED_PREFIX,
    read_inference_log,
)
from pipeline.predict.probe import embedding_model, probe_images
from pipeline.predict.steps import champion_cache
from pipeline.progress import Progress, silent
from pipeline.settings import ScopeConfig, Settings
from pipeline.train.candidate import TrainingSummary


def profile_reference(
    model,
    paths: list[str],
    scope: ScopeConfig,
    progress: Progress = silent,
    test_paths: Sequence[str] = (),
) -> Reference:
    """The reference a monitored model is registered with: drift features of `paths`
    (held-out images) with the PCA fitted on their embeddings, and the intended-use distance
    fitted on the same embeddings (`pipeline.data.scope`), with the share of `test_paths`
    (films of the same period it was not fitted on) that the check flags."""
    probe = embedding_model(model)
    images = [Path(p).read_bytes() for p in paths]
    probabilities, embeddings, undecodable = probe_images(probe, images, progress=progress)
    if undecodable:  # usable training images were decoded by the same decoder: cannot happen
        names = ", ".join(paths[index] for index in undecodable)
        raise ValueError(f"reference images the model cannot decode: {names}")
    projection = fit_projection(embeddings)
    features = feature_table(images, embeddings, probabilities, projection, progress)
    fitted = fit_scope(embeddings, scope)
    scope_json = fitted.to_json()
    if test_paths:
        scope_json |= measure_scope(probe, fitted, test_paths, progress)
    return Reference(features, projection.to_json(), scope_json)


def measure_scope(probe, fitted: ScopeModel, paths: Sequence[str], progress: Progress) -> dict:
    """How many of `paths` the intended-use check flags (distance and image checks), for the
    model card: the rate on films the cut-off was not set on."""
    images = [Path(p).read_bytes() for p in paths]
    _, embeddings, undecodable = probe_images(probe, images, progress=progress)
    images = [data for index, data in enumerate(images) if index not in undecodable]
    _, reasons = scope_reasons(images, embeddings, fitted)
    return {"test_films": len(images), "test_flag_rate": sum(map(bool, reasons)) / len(images)}


@dataclass(frozen=True)
class DriftCheck:
    result: DriftResult
    champion_version: str
    report_uri: str | None
    summary: dict  # the check as stored for the service and `pneumo drift` (JSON)


@dataclass(frozen=True)
class Retraining:
    """What a check did about the drift or drop it found: a note (it waits for labelled films,
    an event was emitted), or the retraining run it started."""

    note: str = ""
    run: TrainingSummary | None = None


@dataclass(frozen=True)
class DriftOutcome:
    """A drift-check flow's result: the check, and on drift what was done about it."""

    check: DriftCheck
    new_labels: int | None = None  # labelled films a retrain would add (counted on drift)
    retraining: Retraining | None = None


@dataclass(frozen=True)
class PerformanceOutcome:
    """A performance-check flow's result: the check, and on a drop what was done about it."""

    check: PerformanceCheck
    retraining: Retraining | None = None


def run_drift_check(
    store: ObjectStore, registry: Registry, settings: Settings, now: datetime | None = None
) -> DriftCheck:
    """Reference of the current champion vs the window of its logged predictions."""
    now = now or datetime.now(UTC)
    champion = load_champion(registry, champion_cache(settings))
    if champion.reference.empty:
        raise RegistryError(
            f"{champion.name} v{champion.version} has no reference profile (registered before "
            "drift monitoring existed): retrain it (`pneumo retrain`) to get one"
        )
    cfg = settings.drift
    current = read_inference_log(store, champion.version, cfg.days, cfg.last_n, now)
    rejected = refused_in_window(store, champion.version, current, cfg.days, now)
    sides = (settings.validation.min_side, settings.validation.max_side)
    # A version without a fitted distance is held to the rate one would be fitted for.
    scope = champion.scope
    scope_rate = scope.false_flag_rate if scope else settings.scope.false_flag_rate
    result = check_drift(
        champion.reference,
        current,
        cfg,
        champion.threshold,
        sides,
        rejected=rejected,
        scope_rate=scope_rate,
    )
    summary = {
        **result.summary(cfg.rule),
        "model": champion.name,
        "model_version": champion.version,
        "checked_at": now.isoformat(timespec="seconds"),
    }
    report_uri = None
    if result.html is not None:
        report_uri = store_drift_report(store, registry, champion, result.html, summary, now)
        summary["report_uri"] = report_uri
    store.put(LAST_CHECK_KEY, json.dumps(summary, indent=2).encode(), overwrite=True)
    return DriftCheck(result, champion.version, report_uri, summary)


def refused_in_window(
    store: ObjectStore, version: str, current: pd.DataFrame, days: int | None, now: datetime
) -> pd.DataFrame:
    """Images the champion refused over the period the checked predictions span (all of
    `days`, or since the oldest checked row; every refusal when nothing was scored)."""
    rejected = read_inference_log(store, version, days, None, now, prefix=REJECTED_PREFIX)
    if rejected.empty or current.empty:
        return rejected
    return rejected[rejected["timestamp"] >= current["timestamp"].min()]


def store_drift_report(
    store: ObjectStore,
    registry: Registry,
    champion: Champion,
    html: str,
    summary: dict,
    now: datetime,
) -> str:
    """The HTML report and JSON summary, in the store and on the champion's run; the HTML's URI."""
    stem = f"reports/drift/{now:%Y%m%dT%H%M%S}-v{champion.version}"
    contents = {".html": html, ".json": json.dumps(summary, indent=2)}
    for suffix, content in contents.items():
        store.put(f"{stem}{suffix}", content.encode())
    with tempfile.TemporaryDirectory() as tmp:
        for suffix, content in contents.items():
            path = Path(tmp) / f"drift-{now:%Y%m%dT%H%M%S}{suffix}"
            path.write_text(content)
            registry.log_run_artifact(champion.run_id, path, "drift")
    return store.uri(f"{stem}.html")


def run_performance_check(
    store: ObjectStore,
    registry: Registry,
    settings: Settings,
    version: str | None = None,
    now: datetime | None = None,
) -> PerformanceCheck:
    """Realised performance of every version with labelled rows in the window, its Evidently
    classification report and the summary stored (the last one where `/metrics` reads it)."""
    now = now or datetime.now(UTC)
    check, rows = check_performance(store, registry, settings.performance, version, now)
    reports = {
        name: classification_report_html(
            group["truth"].to_numpy(),
            group["probability"].to_numpy(),
            float(group["threshold"].iloc[-1]),
        )
        for name, group in rows.items()
        if group["truth"].nunique() == 2  # Evidently's report needs both classes
    }
    return store_performance_check(store, check, reports, now)


def run_shadow_comparison(
    store: ObjectStore,
    registry: Registry,
    settings: Settings,
    now: datetime | None = None,
    films: Path | None = None,
) -> ShadowComparison:
    """Champion against challenger on the shadow traffic of the window, judged by the gate's
    AUC margin, and stored where `pneumo promote` and the approval form read it. With `films`
    (a folder holding the traffic's films), each listed disagreement found there gets both
    models' Grad-CAM."""
    comparison = compare_shadow(
        store, registry, settings.performance, settings.gates.max_auc_drop, now
    )
    if films is not None:
        digests = {item["sha256"] for item in comparison.listed}
        found = find_films(films, digests, settings.ingest.max_pixels)
        if found:
            models = {
                alias: registry.load_version(MONITORED_MODEL, str(version))
                for alias, version in (
                    (CHAMPION, comparison.champion),
                    (CHALLENGER, comparison.challenger),
                )
            }
            comparison = explain_disagreements(comparison, found, models, store)
    store_comparison(store, comparison)
    return comparison


def add_labels_from(source: Path, store: ObjectStore, settings: Settings) -> LabelsAdded:
    """`pneumo labels add`: a CSV or a labels folder, stored append-only."""
    return add_labels(
        store, source, settings.ingest.max_pixels, functools.partial(patient_secret, settings)
    )
