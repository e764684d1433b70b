"""/metrics: Prometheus text a scraper parses, with latency, the model, the log, drift and
realised performance."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from flows.service import create_app
from pipeline.adapters.backends import open_store
from pipeline.monitor.performance import LAST_CHECK_KEY as PERFORMANCE_KEY
from pipeline.predict.inference_log import DRIFT, LAST_CHECK_KEY
from pipeline.serve.background import ChampionHolder
from pipeline.serve.prometheus import LastSummary, ServiceView, service_metrics
from pipeline.settings import Settings


def scrape(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, as Prometheus reads the page."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_requests_are_timed_by_route_and_a_stray_path_counts_as_other(tmp_path: Path) -> None:
    empty = ChampionHolder(load=lambda: None, resolve_revision=lambda: None)
    with TestClient(create_app(Settings(home=tmp_path), holder=empty)) as client:
        for path in ("/health", "/health", "/no-such-route"):
            client.get(path)
        samples = scrape(client.get("/metrics").text)
    count = "pneumo_request_duration_seconds_count"
    health = (("method", "GET"), ("route", "/health"), ("status", "503"))
    assert samples[(count, health)] == 2
    assert samples[(count, (("method", "GET"), ("route", "other"), ("status", "404")))] == 1
    assert samples[("pneumo_champion_loaded", ())] == 0
    assert samples[("pneumo_inference_log_failing", ())] == 0
    # No drift check has run yet: readable, and no age to show.
    assert samples[("pneumo_drift_check_readable", ())] == 1
    assert not any(name == "pneumo_drift_check_age_seconds" for name, _ in samples)
    assert samples[("pneumo_performance_check_readable", ())] == 1
    assert samples[("pneumo_shadow_enabled", ())] == 0


def test_the_last_drift_check_shows_its_age_and_result(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    checked = datetime.now(UTC) - timedelta(hours=2)
    summary = {"status": DRIFT, "checked_at": checked.isoformat(timespec="seconds")}
    open_store(settings).put(LAST_CHECK_KEY, json.dumps(summary).encode())
    empty = ChampionHolder(load=lambda: None, resolve_revision=lambda: None)
    with TestClient(create_app(settings, holder=empty)) as client:
        samples = scrape(client.get("/metrics").text)
    assert 7200 <= samples[("pneumo_drift_check_age_seconds", ())] < 7300
    assert samples[("pneumo_drift_check_timestamp_seconds", ())] == int(checked.timestamp())
    results = {
        labels[0][1]: value
        for (name, labels), value in samples.items()
        if name == "pneumo_drift_check_result"
    }
    assert results == {"no drift": 0, DRIFT: 1, "prevalence shift": 0, "insufficient data": 0}


def test_an_unreadable_drift_check_is_a_metric_not_a_failed_scrape(tmp_path: Path) -> None:
    class Broken:
        def get(self, key: str) -> bytes:
            raise ConnectionError("store down")

    drift = LastSummary(Broken(), LAST_CHECK_KEY)  # type: ignore[arg-type]
    performance = LastSummary(Broken(), PERFORMANCE_KEY)  # type: ignore[arg-type]
    log = {"status": "failing", "spooled_rows": 3, "lost_rows": 1, "written_rows": {"x": 5}}
    champion = {"name": "pneumonia-resnet", "version": "7", "weights_source": "imagenet"}
    metrics = service_metrics(ServiceView(lambda: champion, lambda: log, drift, performance))
    metrics.predictions.labels("PNEUMONIA", "7").inc(2)
    drift.refresh()
    samples = scrape(metrics.render().decode())
    assert drift.error and "store down" in drift.error
    assert samples[("pneumo_drift_check_readable", ())] == 0
    assert samples[("pneumo_model_info", tuple(sorted(champion.items())))] == 1
    assert samples[("pneumo_predictions_total", (("label", "PNEUMONIA"), ("model_version", "7")))]
    assert samples[("pneumo_inference_log_failing", ())] == 1
    assert samples[("pneumo_inference_log_lost_rows_total", ())] == 1
    assert samples[("pneumo_inference_log_written_rows_total", (("log", "x"),))] == 5


def test_the_last_performance_check_shows_realised_figures_by_version(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    checked = datetime.now(UTC) - timedelta(hours=1)
    metrics = {"roc_auc": 0.93, "specificity": 0.61, "specificity_ci_low": 0.52}
    version = {
        "version": "3",
        "metrics": metrics,
        "films": {"films": 90, "patients": 80, "NORMAL": 40, "PNEUMONIA": 50},
    }
    summary = {"alert": True, "checked_at": checked.isoformat(), "versions": [version]}
    open_store(settings).put(PERFORMANCE_KEY, json.dumps(summary).encode())
    empty = ChampionHolder(load=lambda: None, resolve_revision=lambda: None)
    with TestClient(create_app(settings, holder=empty)) as client:
        samples = scrape(client.get("/metrics").text)
    assert 3600 <= samples[("pneumo_performance_check_age_seconds", ())] < 3700
    assert samples[("pneumo_performance_alert", ())] == 1
    assert samples[("pneumo_realised", (("metric", "specificity"), ("version", "3")))] == 0.61
    assert (
        samples[("pneumo_realised_ci_low", (("metric", "specificity"), ("version", "3")))] == 0.52
    )
    assert ("pneumo_realised", (("metric", "ppv"), ("version", "3"))) not in samples
    assert samples[("pneumo_realised_films", (("label", "NORMAL"), ("version", "3")))] == 40


def test_every_metric_the_grafana_dashboard_plots_is_served(tmp_path: Path) -> None:
    import re

    from tests.conftest import REPO

    settings = Settings(home=tmp_path, serve_shadow=True)
    checked = datetime.now(UTC).isoformat()
    store = open_store(settings)
    store.put(LAST_CHECK_KEY, json.dumps({"status": DRIFT, "checked_at": checked}).encode())
    store.put(PERFORMANCE_KEY, json.dumps({"alert": False, "checked_at": checked}).encode())
    empty = ChampionHolder(load=lambda: None, resolve_revision=lambda: None)
    with TestClient(create_app(settings, holder=empty, challenger=empty)) as client:
        client.get("/health")
        families = {f.name for f in text_string_to_metric_families(client.get("/metrics").text)}
    dashboard = json.loads((REPO / "infra" / "grafana" / "pneumo-ops.json").read_text())
    plotted = {
        re.sub(r"_(total|bucket|count|sum)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"pneumo_[a-z0-9_]+", target["expr"])
    }
    assert "pneumo_realised" in plotted and "pneumo_shadow_scored_requests" in plotted
    assert plotted - families == set()
