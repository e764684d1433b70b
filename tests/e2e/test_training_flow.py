"""The whole training-pipeline flow on a tiny real subset, twice, then promote and rollback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import registry
from tests.conftest import FAST_TRAINING, OPEN_GATES, tiny_subset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run 1 trains for one epoch with zero floors; run 2 trains for none (a prior-only model)."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.training import training_pipeline

    tmp = tmp_path_factory.mktemp("e2e")
    data = tiny_subset(tmp / "chest_xray")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PNEUMO_HOME", str(tmp / "home"))
        for key, value in FAST_TRAINING.items():
            env.setenv(key, value)
        first_env = {
            "PNEUMO_TRAIN__CNN_EPOCHS": "1",
            "PNEUMO_TRAIN__RESNET_HEAD_EPOCHS": "1",
            **OPEN_GATES,
        }
        # Untrained, the zero-kernel head predicts the class prior for every image: AUC exactly 0.5,
        # below this floor, so run 2 must fail its gate whatever run 1 scored.
        second_env = {
            "PNEUMO_TRAIN__CNN_EPOCHS": "0",
            "PNEUMO_TRAIN__RESNET_HEAD_EPOCHS": "0",
            "PNEUMO_GATES__MIN_AUC": "0.51",
        }
        summaries = []
        with prefect_test_harness(server_startup_timeout=120):
            for overrides in (first_env, second_env):
                for key, value in overrides.items():
                    env.setenv(key, value)
                summaries.append(training_pipeline(data_path=str(data)))
        yield tmp / "home", summaries


@pytest.fixture(scope="module")
def client(runs):
    import mlflow

    from pipeline.settings import Settings

    registry.configure(Settings(home=runs[0]).tracking_uri(), "pneumo-training", None)
    return mlflow.MlflowClient()


def test_first_run_registers_both_models_and_makes_them_champion(runs, client) -> None:
    _, (first, _) = runs
    for kind, name in (("cnn", "pneumonia-cnn"), ("resnet", "pneumonia-resnet")):
        assert first["models"][kind]["version"] == "1"
        assert first["models"][kind]["gate_passed"] and first["models"][kind]["champion"]
        version = client.get_model_version(name, "1")
        for tag in (
            "manifest_id",
            "gx_result",
            "git_commit",
            "weights_source",
            "threshold",
            "gate_reasons",
        ):
            assert version.tags[tag], tag
        assert version.tags["gate_passed"] == "true"
        assert version.tags["manifest_id"] == first["manifest_id"]
        assert version.tags["gx_result"].startswith("passed")
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert (
        client.get_model_version("pneumonia-resnet", "1").tags["weights_source"].startswith("none")
    )


def test_plots_and_reports_are_run_artifacts(runs, client) -> None:
    _, (first, _) = runs
    for kind in ("cnn", "resnet"):
        run_id = first["models"][kind]["run_id"]
        names = {Path(a.path).name for a in client.list_artifacts(run_id, "evaluation")}
        assert {
            "confusion_matrix.png", "roc_pr.png", "gradcam.png", "training_curves.png",
            "augmentation.png", "classification_report.txt", "metrics.json",
        } <= names  # fmt: skip
        assert "MLmodel" in {Path(a.path).name for a in client.list_artifacts(run_id, "model")}
        metrics = client.get_run(run_id).data.metrics
        assert 0.0 <= metrics["test_roc_auc"] <= 1.0


def test_worse_second_run_does_not_move_the_champion(runs, client) -> None:
    _, (_, second) = runs
    for kind, name in (("cnn", "pneumonia-cnn"), ("resnet", "pneumonia-resnet")):
        result = second["models"][kind]
        assert result["version"] == "2" and result["metrics"]["roc_auc"] == pytest.approx(0.5)
        assert not result["gate_passed"] and not result["champion"]
        assert any("roc_auc 0.500 < floor 0.510" in r for r in result["gate_reasons"])
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
        assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"
        assert client.get_model_version(name, "2").tags["gate_passed"] == "false"


def test_promote_refuses_a_failed_version_unless_forced_and_rollback_undoes_it(
    runs, client, monkeypatch
) -> None:
    from flows.cli import app

    monkeypatch.setenv("PNEUMO_HOME", str(runs[0]))
    runner = CliRunner()
    refused = runner.invoke(app, ["promote", "pneumonia-resnet", "2", "--reason", "try"])
    assert refused.exit_code == 2 and "did not pass its gate" in refused.output
    assert str(client.get_model_version_by_alias("pneumonia-resnet", "champion").version) == "1"

    forced = runner.invoke(
        app, ["promote", "pneumonia-resnet", "2", "--reason", "radiologist review", "--force"]
    )
    assert forced.exit_code == 0, forced.output
    promoted = client.get_model_version_by_alias("pneumonia-resnet", "champion")
    assert str(promoted.version) == "2"
    assert promoted.tags["champion_reason"] == "forced promotion: radiologist review"
    assert promoted.tags["previous_champion"] == "1" and promoted.tags["champion_by"]

    back = runner.invoke(app, ["rollback", "pneumonia-resnet", "--reason", "false positives"])
    assert back.exit_code == 0, back.output
    restored = client.get_model_version_by_alias("pneumonia-resnet", "champion")
    assert str(restored.version) == "1"
    assert restored.tags["champion_reason"] == "rollback from version 2: false positives"
    missing = runner.invoke(app, ["promote", "pneumonia-resnet", "99", "--reason", "x"])
    assert missing.exit_code == 2 and "has no version '99'" in missing.output
