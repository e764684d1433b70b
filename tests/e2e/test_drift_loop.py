"""The monitoring loop on real images: predict, drift check, retrain, gates (embedded default)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import registry
from tests.conftest import FAST_TRAINING, OPEN_GATES, tiny_subset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """A trained champion, then an unshifted and a washed-out batch through predict + drift."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.monitoring import drift_check
    from flows.training import training_pipeline
    from pipeline.monitoring import append_inference_log, load_champion, predict_batch, read_images
    from pipeline.settings import Settings
    from pipeline.simulate import simulate_batch
    from pipeline.storage import open_store

    tmp = tmp_path_factory.mktemp("drift")
    data = tiny_subset(tmp / "chest_xray")
    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            **FAST_TRAINING,
            **OPEN_GATES,
            "PNEUMO_HOME": str(tmp / "home"),
            "PNEUMO_TRAIN__CNN_EPOCHS": "1",
            "PNEUMO_TRAIN__RESNET_HEAD_EPOCHS": "1",
            "PNEUMO_DRIFT__MIN_CURRENT": "10",
            "PNEUMO_RETRAIN_EPOCHS": "1",
        }.items():
            env.setenv(key, value)
        results = {}
        with prefect_test_harness(server_startup_timeout=120):
            training_pipeline(data_path=str(data), models=("resnet",))
            settings = Settings()
            store = open_store(settings)
            champion = load_champion(settings.home / "cache")
            for kind, trigger in (("none", "none"), ("contrast", "direct")):
                batch = tmp / kind
                count = simulate_batch(data / "test", batch, kind) + simulate_batch(
                    data / "val", batch / "val", kind
                )
                predictions, _ = predict_batch(
                    champion, read_images(str(batch), store), settings.ingest.max_pixels
                )
                append_inference_log(store, predictions)
                results[kind] = drift_check(trigger=trigger, last_n=count)
            results["insufficient"] = drift_check(trigger="direct", last_n=5)
            yield tmp / "home", results, env


def test_unshifted_batch_shows_no_drift(loop) -> None:
    _, results, _ = loop
    assert results["none"]["status"] == "no drift"
    assert results["none"]["current_rows"] == 18 and "retrain" not in results["none"]


def test_washed_out_batch_drifts_and_retrains_a_new_version(loop) -> None:
    import mlflow

    from pipeline.settings import Settings

    home, results, _ = loop
    drift = results["contrast"]
    assert drift["status"] == "drift detected"
    assert {"contrast", "p05", "p95"} <= set(drift["drifted_columns"])
    assert (
        Path(drift["report_uri"]).is_file() and Path(drift["report_uri"]).stat().st_size > 100_000
    )
    retrained = drift["retrain"]["models"]["resnet"]
    assert retrained["version"] == "2"
    registry.configure(Settings(home=home).tracking_uri(), "pneumo-training", None)
    tags = mlflow.MlflowClient().get_model_version("pneumonia-resnet", "2").tags
    assert tags["drift_report_uri"] == drift["report_uri"]
    assert tags["retrain_reason"].startswith("drift in ") and tags["warm_start_from"] == "1"
    assert tags["weights_source"] == "warm start from pneumonia-resnet v1"
    run_id = mlflow.MlflowClient().get_model_version_by_alias("pneumonia-resnet", "champion").run_id
    reports = {
        a.path
        for a in mlflow.MlflowClient().list_artifacts(
            mlflow.MlflowClient().get_model_version("pneumonia-resnet", "1").run_id, "drift"
        )
    }
    assert any(p.endswith(".html") for p in reports) and run_id


def test_too_few_predictions_is_insufficient_data(loop) -> None:
    _, results, _ = loop
    assert results["insufficient"]["status"] == "insufficient data"
    assert "report_uri" not in results["insufficient"]


def test_worse_retrained_model_does_not_take_the_champion_alias(loop, monkeypatch) -> None:
    import mlflow
    from prefect.testing.utilities import prefect_test_harness

    import flows.monitoring
    from flows.monitoring import retrain_champion
    from pipeline.models import build_resnet
    from pipeline.settings import Settings
    from pipeline.training import TrainedModel

    home, _, _ = loop
    registry.configure(Settings(home=home).tracking_uri(), "pneumo-training", None)
    client = mlflow.MlflowClient()
    before = str(client.get_model_version_by_alias("pneumonia-resnet", "champion").version)

    def prior_only(model, source, data, cfg, epochs):  # a zero-kernel head: AUC exactly 0.5
        size = int(model.inputs[0].shape[1])
        worse = build_resnet(
            cfg.model_copy(update={"image_size": size}), None, float(data.train.labels.mean())
        )
        return TrainedModel("resnet", worse, weights_source=f"warm start from {source}")

    monkeypatch.setattr(flows.monitoring, "fine_tune", prior_only)
    monkeypatch.setenv("PNEUMO_GATES__MIN_AUC", "0.51")
    with prefect_test_harness(server_startup_timeout=120):
        summary = retrain_champion(reason="test: worse model")
    result = summary["models"]["resnet"]
    assert result["metrics"]["roc_auc"] == pytest.approx(0.5) and not result["gate_passed"]
    assert str(client.get_model_version_by_alias("pneumonia-resnet", "champion").version) == before
    assert (
        str(client.get_model_version_by_alias("pneumonia-resnet", "challenger").version)
        == result["version"]
    )
