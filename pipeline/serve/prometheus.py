"""Prometheus metrics of the prediction service, on a registry of each app's own.

Counters and the latency histogram are updated as requests are answered; the rest (which model
serves, the inference log's state, the last drift and performance checks, the shadow) is read
from the live service when Prometheus scrapes, so a scrape never shows a stale copy. No
process-global registry: two apps in one process (the tests) count apart.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pipeline.adapters.storage import ObjectNotFoundError, ObjectStore
from pipeline.predict.inference_log import DRIFT, INSUFFICIENT, NO_DRIFT, PREVALENCE
from pipeline.train.uncertainty import INTERVAL_METRICS

CONTENT_TYPE = CONTENT_TYPE_LATEST  # Prometheus's text format, version included
DRIFT_STATUSES = (NO_DRIFT, DRIFT, PREVALENCE, INSUFFICIENT)
# Seconds: a single image answers in ~0.1 s, a batch of 16 ResNet50 films in a few seconds.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class LastSummary:
    """The newest summary a check stored under `key` (the drift check's, the performance
    check's), re-read from the store at most every `max_age` seconds; None while there is none
    or it cannot be read."""

    store: ObjectStore
    key: str
    max_age: float = 30.0
    summary: dict | None = None
    read_at: float = float("-inf")
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self) -> None:
        with self.lock:
            if time.monotonic() - self.read_at < self.max_age:
                return
            self.read_at = time.monotonic()
            try:
                self.summary = json.loads(self.store.get(self.key))
                self.error = None
            except ObjectNotFoundError:  # no check has run yet
                self.summary, self.error = None, None
            except Exception as exc:  # an unreadable store must not fail a scrape
                self.error = f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class ServiceView:
    """What a scrape reads from the running service."""

    champion: Callable[[], dict[str, str] | None]  # name, version, weights_source; None: none
    inference_log: Callable[[], dict]  # InferenceLogWriter.status()
    drift: LastSummary
    performance: LastSummary
    shadow: Callable[[], dict] | None = None  # ShadowScorer.status(); None: no shadow


class LiveCollector(Collector):
    def __init__(self, view: ServiceView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        yield from champion_metrics(self.view.champion())
        yield from log_metrics(self.view.inference_log())
        yield from drift_metrics(self.view.drift, time.time())
        yield from performance_metrics(self.view.performance, time.time())
        yield from shadow_metrics(self.view.shadow() if self.view.shadow else None)


def champion_metrics(champion: dict[str, str] | None) -> Iterator[Metric]:
    loaded = GaugeMetricFamily("pneumo_champion_loaded", "1 while a champion is loaded")
    loaded.add_metric([], int(champion is not None))
    yield loaded
    info = InfoMetricFamily("pneumo_model", "The model serving now")
    if champion is not None:
        info.add_metric([], champion)
    yield info


def log_metrics(log: dict) -> Iterator[Metric]:
    failing = GaugeMetricFamily(
        "pneumo_inference_log_failing", "1 while writing the inference log fails"
    )
    failing.add_metric([], int(log["status"] == "failing"))
    spooled = GaugeMetricFamily(
        "pneumo_inference_log_spooled_rows", "Rows waiting on local disk for the store"
    )
    spooled.add_metric([], log["spooled_rows"])
    lost = CounterMetricFamily(
        "pneumo_inference_log_lost_rows", "Rows dropped because the spool was full"
    )
    lost.add_metric([], log["lost_rows"])
    written = CounterMetricFamily(
        "pneumo_inference_log_written_rows", "Rows written to the store, by log", labels=["log"]
    )
    for prefix, rows in sorted(log["written_rows"].items()):
        written.add_metric([prefix], rows)
    yield from (failing, spooled, lost, written)


def shadow_metrics(shadow: dict | None) -> Iterator[Metric]:
    """The challenger in shadow: whether it runs, which version, requests scored and dropped
    (by reason: a drop is counted, never an error for the caller)."""
    enabled = GaugeMetricFamily("pneumo_shadow_enabled", "1 when the challenger runs in shadow")
    enabled.add_metric([], int(shadow is not None))
    yield enabled
    if shadow is None:
        return
    version = shadow["challenger_version"]
    loaded = GaugeMetricFamily(
        "pneumo_shadow_challenger_version", "The challenger version in shadow (absent: none)"
    )
    if version is not None:
        loaded.add_metric([], float(version))
    scored = CounterMetricFamily(
        "pneumo_shadow_scored_requests", "Requests the challenger scored in shadow"
    )
    scored.add_metric([], shadow["scored_requests"])
    dropped = CounterMetricFamily(
        "pneumo_shadow_dropped_requests",
        "Requests the challenger did not score, by reason",
        labels=["reason"],
    )
    for reason, count in sorted(shadow["dropped_requests"].items()):
        dropped.add_metric([reason], count)
    queued = GaugeMetricFamily(
        "pneumo_shadow_queued_requests", "Requests waiting for the challenger"
    )
    queued.add_metric([], shadow["queued_requests"])
    yield from (loaded, scored, dropped, queued)


def performance_metrics(performance: LastSummary, now: float) -> Iterator[Metric]:
    """The last performance check: its age, whether it alerted, and each version's realised
    figures on labelled films with their interval bounds."""
    yield from check_metrics(performance, "performance", now)
    summary = performance.summary
    if summary is None:
        return
    alert = GaugeMetricFamily(
        "pneumo_performance_alert", "1 when the last performance check found a drop"
    )
    alert.add_metric([], int(bool(summary.get("alert"))))
    yield alert
    labels = ["version", "metric"]
    families = {
        bound: GaugeMetricFamily(
            f"pneumo_realised{suffix}",
            f"Realised figure on labelled films{note}, by model version",
            labels=labels,
        )
        for bound, suffix, note in (
            ("", "", ""),
            ("_ci_low", "_ci_low", " (interval's lower bound)"),
            ("_ci_high", "_ci_high", " (interval's upper bound)"),
        )
    }
    films = GaugeMetricFamily(
        "pneumo_realised_films", "Labelled films behind the figures", labels=["version", "label"]
    )
    for entry in summary.get("versions", []):
        version, metrics = str(entry["version"]), entry["metrics"]
        for name in INTERVAL_METRICS:
            for bound, family in families.items():
                value = metrics.get(f"{name}{bound}")
                if value is not None:
                    family.add_metric([version, name], float(value))
        for label in ("NORMAL", "PNEUMONIA"):
            films.add_metric([version, label], entry["films"][label])
    yield from (*families.values(), films)


def check_metrics(check: LastSummary, name: str, now: float) -> Iterator[Metric]:
    """A stored check's `pneumo_<name>_check_readable` and, once one has run, its age."""
    readable = GaugeMetricFamily(
        f"pneumo_{name}_check_readable", f"0 when the last {name} check could not be read"
    )
    readable.add_metric([], int(check.error is None))
    yield readable
    if check.summary is None:
        return
    checked = _epoch(check.summary.get("checked_at"))
    age = GaugeMetricFamily(
        f"pneumo_{name}_check_age_seconds", f"Seconds since the last {name} check"
    )
    if checked is not None:
        age.add_metric([], max(0.0, now - checked))
    yield age


def drift_metrics(drift: LastSummary, now: float) -> Iterator[Metric]:
    yield from check_metrics(drift, "drift", now)
    if drift.summary is None:
        return
    checked = _epoch(drift.summary.get("checked_at"))
    stamp = GaugeMetricFamily(
        "pneumo_drift_check_timestamp_seconds", "When the last drift check ran (Unix time)"
    )
    if checked is not None:
        stamp.add_metric([], checked)
    yield stamp
    result = GaugeMetricFamily(
        "pneumo_drift_check_result", "1 for the last drift check's result", labels=["status"]
    )
    for status in DRIFT_STATUSES:
        result.add_metric([status], int(drift.summary.get("status") == status))
    yield result


def _epoch(iso: str | None) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp() if iso else None
    except ValueError:
        return None


@dataclass(frozen=True)
class ServiceMetrics:
    registry: CollectorRegistry
    latency: Histogram
    predictions: Counter
    out_of_scope: Counter

    def render(self) -> bytes:
        return generate_latest(self.registry)


def service_metrics(view: ServiceView) -> ServiceMetrics:
    """A registry of the service's own: request latency by route, predictions by label and
    model version, films outside the intended use, and the live view."""
    registry = CollectorRegistry(auto_describe=True)
    latency = Histogram(
        "pneumo_request_duration_seconds",
        "Time to answer a request, by route, method and status code",
        ["route", "method", "status"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    predictions = Counter(
        "pneumo_predictions",
        "Images scored, by predicted label and model version",
        ["label", "model_version"],
        registry=registry,
    )
    out_of_scope = Counter(
        "pneumo_out_of_scope",
        "Films outside the intended use, by model version and answer: flagged (a label with "
        "in_scope false) or refused (PNEUMO_SCOPE__MODE=refuse)",
        ["model_version", "answer"],
        registry=registry,
    )
    registry.register(LiveCollector(view))
    return ServiceMetrics(registry, latency, predictions, out_of_scope)
