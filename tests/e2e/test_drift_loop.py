"""The monitoring loop on real images: predict, drift check, retrain, gates (embedded default)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Trained, champion_of

pytestmark = pytest.mark.slow
RESNET = "pneumonia-resnet"


@pytest.fixture(scope="module")
def loop(trained: Trained, registry):
    """The champion scores an unshifted and a washed-out batch; drift is checked after each.

    The washed-out batch is checked twice: before labelled images of it arrive (retraining
    waits) and after (it retrains with them)."""
    from flows.monitoring import drift_check
    from pipeline.adapters.backends import open_store
    from pipeline.monitor.simulate import simulate_batch
    from pipeline.predict.champion import load_champion
    from pipeline.predict.inference_log import append_inference_log
    from pipeline.predict.scoring import predict_batch, read_images
    from pipeline.settings import Settings

    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            **trained.env,
            "PNEUMO_DRIFT__MIN_CURRENT": "10",
            "PNEUMO_RETRAIN_EPOCHS": "1",
            # A profile size other than the champion's 32 px: the retrain keeps the model's own.
            "PNEUMO_TRAIN__IMAGE_SIZE": "48",
        }.items():
            env.setenv(key, value)
        settings = Settings()
        store = open_store(settings)
        champion = load_champion(registry, settings.cache_dir / "drift-loop")
        results = {}
        work = trained.home.parent / "drift-loop"
        for kind, trigger in (("none", "none"), ("contrast", "direct")):
            batch = work / kind
            count = simulate_batch(trained.data / "test", batch, kind) + simulate_batch(
                trained.data / "val", batch / "val", kind
            )
            items, _ = read_images(str(batch), store)
            predictions, _ = predict_batch(champion, items, settings.ingest.max_pixels)
            append_inference_log(store, predictions)
            results[kind] = drift_check(trigger=trigger, last_n=count)
        results["waiting"] = results.pop("contrast")
        inbox = work / "labelled"
        for label in ("NORMAL", "PNEUMONIA"):
            source = trained.data / "train" / label
            simulate_batch(source, inbox / "train" / label, "contrast")
        env.setenv("PNEUMO_DRIFT__LABELED_INBOX", str(inbox))
        results["contrast"] = drift_check(trigger="direct", last_n=count)
        results["insufficient"] = drift_check(trigger="direct", last_n=5)
    return champion.version, results


def test_image_drift_without_labelled_images_alerts_and_waits(loop) -> None:
    _, results = loop
    waiting = results["waiting"]
    assert waiting.check.summary["status"] == "drift detected" and waiting.new_labels == 0
    assert waiting.retraining.run is None
    assert waiting.retraining.note.startswith("waiting for labelled images of the shifted films")


def test_unshifted_batch_shows_no_drift(loop) -> None:
    _, results = loop
    unshifted = results["none"]
    assert unshifted.check.summary["status"] == "no drift"
    assert unshifted.check.summary["current_rows"] == 18 and unshifted.retraining is None


def test_washed_out_batch_drifts_and_retrains_a_new_version(loop, registry) -> None:
    scored_by, results = loop
    outcome = results["contrast"]
    drift = outcome.check.summary
    assert drift["status"] == "drift detected" and drift["model_version"] == scored_by
    assert {"contrast", "p05", "p95"} <= set(drift["drifted_columns"])
    report = Path(drift["report_uri"])
    assert report.is_file() and report.stat().st_size > 100_000
    retrained = outcome.retraining.run.models["resnet"]
    assert int(retrained.version) > int(scored_by)
    tags = registry.client.get_model_version(RESNET, retrained.version).tags
    assert tags["drift_report_uri"] == drift["report_uri"]
    assert tags["retrain_reason"].startswith("drift in ") and tags["warm_start_from"] == scored_by
    assert outcome.new_labels > 0
    assert tags["image_size"] == "32" and float(tags["threshold"]) == retrained.threshold
    origin = registry.client.get_model_version(RESNET, scored_by).tags["weights_source"]
    assert tags["weights_source"] == f"warm start from {RESNET} v{scored_by} ({origin})"
    scored_run = registry.client.get_model_version(RESNET, scored_by).run_id
    reports = {a.path for a in registry.client.list_artifacts(scored_run, "drift")}
    assert any(p.endswith(".html") for p in reports) and any(p.endswith(".json") for p in reports)


def test_too_few_predictions_is_insufficient_data(loop) -> None:
    _, results = loop
    insufficient = results["insufficient"]
    assert insufficient.check.summary["status"] == "insufficient data"
    assert "report_uri" not in insufficient.check.summary and insufficient.retraining is None


def test_worse_retrained_model_does_not_take_the_champion_alias(
    trained_env, registry, monkeypatch
) -> None:
    import pipeline.train.steps
    from flows.monitoring import retrain_champion
    from pipeline.train.fit import TrainedModel
    from pipeline.train.models import build_resnet

    before = champion_of(registry, RESNET)

    # A zero-kernel head: one constant score.
    def prior_only(model, source, data, cfg, epochs, refit_head):
        size = int(model.inputs[0].shape[1])
        worse = build_resnet(
            cfg.model_copy(update={"image_size": size}), None, float(data.train.labels.mean())
        )
        return TrainedModel("resnet", worse, weights_source=f"warm start from {source}")

    monkeypatch.setattr(pipeline.train.steps, "fine_tune", prior_only)
    monkeypatch.setenv("PNEUMO_GATES__MIN_SCORE_RANGE", "0.02")
    summary = retrain_champion(reason="test: worse model")
    result = summary.models["resnet"]
    assert result.gate_reasons[0].startswith("collapsed") and not result.gate_passed
    assert champion_of(registry, RESNET) == before
    challenger = registry.client.get_model_version_by_alias(RESNET, "challenger")
    assert str(challenger.version) == result.version
