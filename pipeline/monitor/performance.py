"""Realised performance: the champion's scored films joined with the labels that arrived.

Input drift cannot say that a model stopped working; only labels can. Per model version, the
labelled rows of the inference log give AUC, sensitivity, specificity, PPV and NPV at the
threshold each film was served at, with patient-bootstrap intervals, set against what the
version was validated at (its site acceptance where recorded, else its test split).

The drop rule: a metric has dropped when the upper end of its 95 % patient-bootstrap interval
lies below the validated value minus a tolerance (0.05), judged only from `min_per_class`
labelled films of the class the metric counts (30 NORMAL films for specificity). One-sided,
the bound misses a model that is exactly `tolerance` worse at most 2.5 % of the time, and one
as good as validated far less; patient resampling keeps a child's several films from counting
as independent evidence; the tolerance keeps a validated figure measured on a few hundred films
from being held to its third decimal. Its false alarms and power: benchmarks/performance_quality.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.adapters.registry import Registry
from pipeline.adapters.storage import ObjectStore
from pipeline.monitor.labels import current_labels, join_labels, read_labels, unmatched_labels
from pipeline.monitor.site import HISTORY_DIR
from pipeline.predict.champion import MONITORED_MODEL
from pipeline.predict.inference_log import read_inference_log
from pipeline.settings import PerformanceConfig
from pipeline.train.uncertainty import bootstrap_intervals, rank_auc, rate_metrics

PERFORMANCE_PREFIX = "reports/performance"
LAST_CHECK_KEY = f"{PERFORMANCE_PREFIX}/last-check.json"
# metric -> the class whose films it counts (None: both)
JUDGED = {"roc_auc": None, "sensitivity": 1, "specificity": 0}


@dataclass(frozen=True)
class Validated:
    """What a version was validated at, and where that was measured."""

    metrics: dict[str, float]
    source: str


def validated_figures(registry: Registry, name: str, version: str) -> Validated:
    """The version's site acceptance figures where one is in force (its threshold is the one
    served), else its test split's."""
    found = registry.version(name, version)
    acceptance = found.tags.get("site_acceptance_id")
    if acceptance:
        try:
            path = f"{HISTORY_DIR}/{acceptance.replace(':', '')}.json"
            record = json.loads(registry.read_run_file(found.run_id, path))
            films = record["films"]["films"]
            return Validated(record["metrics"], f"site acceptance {acceptance} ({films} films)")
        except (FileNotFoundError, KeyError, ValueError):
            pass  # its record unreadable: the test split still says what it was validated at
    metrics = registry.version_info(name, version)["metrics"]
    return Validated(metrics, "test split at registration")


def realised_metrics(rows: pd.DataFrame, cfg: PerformanceConfig) -> dict[str, float]:
    """The five metrics with interval bounds. Rates count the decision each film was served
    with (its logged threshold: a site acceptance may have changed it mid-window); the AUC
    ranks the probabilities."""
    truth = rows["truth"].to_numpy(dtype=int)
    scores = rows["probability"].to_numpy(dtype=float)
    margin = scores - rows["threshold"].to_numpy(dtype=float)  # >= 0: served as PNEUMONIA
    patients = rows["patient_id"].astype(str).tolist()
    both = 0 < truth.sum() < len(truth)
    intervals = bootstrap_intervals(truth, margin, 0.0, patients, cfg.resamples, cfg.level)
    if rows["threshold"].nunique() > 1:  # the margin no longer ranks as the probability does
        by_probability = bootstrap_intervals(truth, scores, 0.5, patients, cfg.resamples, cfg.level)
        intervals["roc_auc"] = by_probability["roc_auc"]
    # The project's rates at the served decisions (margin >= 0); the AUC on the probabilities.
    metrics = rate_metrics(truth, margin, 0.0)
    metrics["roc_auc"] = rank_auc(truth, scores) if both else float("nan")
    for name, (low, high) in intervals.items():
        metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = low, high
    return metrics


def judge_drops(
    metrics: dict[str, float],
    validated: dict[str, float],
    counts: dict[int, int],
    cfg: PerformanceConfig,
) -> tuple[list[str], list[str]]:
    """(dropped metrics, one reason line per metric) under the module's drop rule."""
    dropped, reasons = [], []
    for name, judged_class in JUDGED.items():
        have = min(counts.values()) if judged_class is None else counts[judged_class]
        base = validated.get(name)
        if base is None or np.isnan(metrics[name]):
            reasons.append(f"{name}: no validated value or not measurable here")
            continue
        if have < cfg.min_per_class:
            reasons.append(
                f"{name} {metrics[name]:.3f}: not judged, {have} labelled films of the class it "
                f"counts (needs {cfg.min_per_class})"
            )
            continue
        floor, high = base - cfg.tolerance, metrics[f"{name}_ci_high"]
        drop = high < floor
        dropped += [name] if drop else []
        reasons.append(
            f"{name} {metrics[name]:.3f} [{metrics[f'{name}_ci_low']:.3f}, {high:.3f}] "
            f"{'DROP: interval below' if drop else 'vs'} validated {base:.3f} - "
            f"{cfg.tolerance:g} = {floor:.3f}"
        )
    return dropped, reasons


@dataclass(frozen=True)
class VersionPerformance:
    model: str
    version: str
    films: dict[str, int]
    metrics: dict[str, float]
    validated: dict[str, float]
    validated_source: str
    dropped: list[str]
    reasons: list[str]

    @property
    def alert(self) -> bool:
        return bool(self.dropped)


def measure_version(
    rows: pd.DataFrame, model: str, version: str, validated: Validated, cfg: PerformanceConfig
) -> VersionPerformance:
    """One version's realised figures, judged against its validated ones."""
    truth = rows["truth"].to_numpy(dtype=int)
    counts = {1: int(truth.sum()), 0: int(len(truth) - truth.sum())}
    metrics = realised_metrics(rows, cfg)
    dropped, reasons = judge_drops(metrics, validated.metrics, counts, cfg)
    films = {
        "films": len(rows),
        "patients": int(rows["patient_id"].nunique()),
        "NORMAL": counts[0],
        "PNEUMONIA": counts[1],
    }
    kept = {k: float(v) for k, v in validated.metrics.items() if k in JUDGED}
    return VersionPerformance(
        model, version, films, metrics, kept, validated.source, dropped, reasons
    )


@dataclass(frozen=True)
class PerformanceCheck:
    versions: list[VersionPerformance]
    labels: int  # reads in force
    unmatched: int  # of them, images no logged row names
    checked_at: str
    days: int | None
    champion: str | None  # the version `champion` points at now
    labeled_folders: list[str] = field(default_factory=list)  # where the labelled films are
    report_uris: dict[str, str] = field(default_factory=dict)  # version -> HTML report

    @property
    def alert(self) -> bool:
        return any(v.alert for v in self.versions)

    @property
    def champion_dropped(self) -> VersionPerformance | None:
        """The champion's figures when they dropped: what retraining answers (an older
        version's drop is history)."""
        return next((v for v in self.versions if v.alert and v.version == self.champion), None)

    def summary(self) -> dict[str, Any]:
        return {
            "alert": self.alert,
            "checked_at": self.checked_at,
            "days": self.days,
            "champion": self.champion,
            "labels": self.labels,
            "unmatched_labels": self.unmatched,
            "labeled_folders": self.labeled_folders,
            "versions": [asdict(v) | {"alert": v.alert} for v in self.versions],
            "report_uris": self.report_uris,
        }


def labelled_window(
    store: ObjectStore, days: int | None, version: str | None, now: datetime
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(labelled scored rows in the window, the labels in force, how many name no scored row)."""
    log = read_inference_log(store, now=now)
    reads = read_labels(store)
    labels = current_labels(reads)
    unmatched = len(unmatched_labels(log, labels))
    if days is not None and not log.empty:
        log = log[log["timestamp"] >= pd.Timestamp(now - timedelta(days=days))]
    if version is not None and not log.empty:
        log = log[log["model_version"].astype(str) == str(version)]
    return join_labels(log, reads), labels, unmatched


def check_performance(
    store: ObjectStore,
    registry: Registry,
    cfg: PerformanceConfig,
    version: str | None = None,
    now: datetime | None = None,
) -> tuple[PerformanceCheck, dict[str, pd.DataFrame]]:
    """Every version's realised performance over the window (`cfg.days`), and the labelled
    rows behind each (for its report)."""
    now = now or datetime.now(UTC)
    joined, labels, unmatched = labelled_window(store, cfg.days, version, now)
    groups = {} if joined.empty else dict(list(joined.groupby(joined["model_version"].astype(str))))
    versions = [
        measure_version(
            rows, MONITORED_MODEL, name, validated_figures(registry, MONITORED_MODEL, name), cfg
        )
        for name, rows in sorted(groups.items(), key=lambda item: int(item[0]))
    ]
    current = registry.champion_version(MONITORED_MODEL)
    check = PerformanceCheck(
        versions=versions,
        labels=len(labels),
        unmatched=unmatched,
        checked_at=now.isoformat(timespec="seconds"),
        days=cfg.days,
        champion=str(current.version) if current else None,
        labeled_folders=labelled_folders(labels),
    )
    return check, groups


def labelled_folders(labels: pd.DataFrame) -> list[str]:
    """The folders labels came from, newest last: where a retraining finds the films (a CSV
    names images, it does not hold them)."""
    sources = labels.sort_values("added_at", kind="stable")["source"].drop_duplicates(keep="last")
    return [s for s in sources if Path(s).is_dir()]


def store_performance_check(
    store: ObjectStore, check: PerformanceCheck, reports: dict[str, str], now: datetime
) -> PerformanceCheck:
    """Each version's HTML report, the summary beside them, and the last check's summary."""
    stem = f"{PERFORMANCE_PREFIX}/{now:%Y%m%dT%H%M%S}"
    uris = {}
    for version, html in reports.items():
        store.put(f"{stem}-v{version}.html", html.encode())
        uris[version] = store.uri(f"{stem}-v{version}.html")
    check = PerformanceCheck(**{**check.__dict__, "report_uris": uris})
    summary = json.dumps(check.summary(), indent=2, default=float).encode()
    store.put(f"{stem}.json", summary)
    store.put(LAST_CHECK_KEY, summary, overwrite=True)
    return check
