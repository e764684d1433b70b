"""/metrics: Prometheus text a scraper parses, with latency, the model, the log and drift."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from flows.service import create_app
from pipeline.adapters.backends import open_store
from pipeline.monitor.drift import DRIFT
from pipeline.monitor.inference_log import LAST_CHECK_KEY
from pipeline.serve.background import ChampionHolder
from pipeline.serve.metrics import LastDriftCheck, ServiceView, service_metrics
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

    drift = LastDriftCheck(Broken())  # type: ignore[arg-type]
    log = {"status": "failing", "spooled_rows": 3, "lost_rows": 1, "written_rows": {"x": 5}}
    champion = {"name": "pneumonia-resnet", "version": "7", "weights_source": "imagenet"}
    metrics = service_metrics(ServiceView(lambda: champion, lambda: log, drift))
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
