"""The training-pipeline flow on a tiny real subset: registration, a worse run, promote/rollback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import SHARED_WEIGHTS
from tests.e2e.conftest import Trained, champion_of, latest_version

if TYPE_CHECKING:
    from pipeline.train.candidate import TrainingSummary

pytestmark = pytest.mark.slow
MODELS = (("cnn", "pneumonia-cnn"), ("resnet", "pneumonia-resnet"))
runner = CliRunner()


@pytest.fixture(scope="module")
def worse_run(trained: Trained, registry) -> tuple[TrainingSummary, dict[str, str]]:
    """A run that trains for no epoch: the zero-kernel head predicts the class prior for every
    image, a collapsed model, so it must fail its gate. Returns its summary and the champions
    before it. (Its AUC is not reliably 0.5: scores equal up to one float32 ulp, which differs
    by batch, break the ties at random; that is why collapse is checked on the score spread.)"""
    from flows.training import training_pipeline

    before = {name: champion_of(registry, name) for _, name in MODELS}
    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            **trained.env,
            "PNEUMO_TRAIN__CNN_EPOCHS": "0",
            # The epoch-trained head, so that no epoch leaves it at the prior (the exact
            # logistic head has no epochs).
            "PNEUMO_TRAIN__RESNET_HEAD_FIT": "adam",
            "PNEUMO_TRAIN__RESNET_HEAD_EPOCHS": "0",
            "PNEUMO_TRAIN__RESNET_FINETUNE_EPOCHS": "0",
            "PNEUMO_GATES__MIN_SCORE_RANGE": "0.02",
        }.items():
            env.setenv(key, value)
        summary = training_pipeline(data_path=str(trained.data))
    return summary, before


def test_first_run_registers_both_models_and_makes_them_champion(trained, registry) -> None:
    first = trained.summary
    for kind, name in MODELS:
        assert first.models[kind].version == "1"
        assert first.models[kind].gate_passed and first.models[kind].champion
        version = registry.client.get_model_version(name, "1")
        for tag in ("manifest_id", "gx_result", "git_commit", "weights_source", "threshold"):
            assert version.tags[tag], tag
        assert version.tags["gate_passed"] == "true" and version.tags["gate_reasons"]
        assert version.tags["manifest_id"] == first.manifest_id
        assert version.tags["gx_result"].startswith("passed")
        # The first move of `champion` (later tests move it; the history keeps every move).
        first_move = registry.champion_history(name)[0]
        assert first_move["version"] == "1" and first_move["replaced"] == ""
        assert first_move["champion_reason"].startswith("gate passed in run")
    resnet = registry.client.get_model_version("pneumonia-resnet", "1")
    assert resnet.tags["weights_source"] == f"file:{SHARED_WEIGHTS}"
    assert resnet.tags["profile"] == "tiny"


def test_runs_cover_training_name_their_data_and_link_the_flow_run(trained, registry) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    flow_runs = set()
    for kind, name in MODELS:
        version = registry.client.get_model_version(name, "1")
        run = registry.client.get_run(version.run_id)
        # The run starts when training starts: its duration includes the training time.
        trained_ms = 1000 * float(run.data.params["train_seconds"])
        assert run.info.end_time - run.info.start_time >= trained_ms
        datasets = [entry.dataset for entry in run.inputs.dataset_inputs]
        assert [d.name for d in datasets] == [f"manifest-{trained.summary.manifest_id}"]
        assert version.description.startswith("CNN from scratch" if kind == "cnn" else "ResNet50")
        assert "Gate PASS" in version.description and trained.summary.manifest_id in (
            version.description
        )
        other = "resnet_" if kind == "cnn" else "cnn_"
        assert not [p for p in run.data.params if p.startswith(other)], run.data.params
        flow_runs.add(run.data.tags["prefect_flow_run_id"])
        assert version.tags["prefect_flow_run_id"] == run.data.tags["prefect_flow_run_id"]
    assert len(flow_runs) == 1  # both models of one training run

    with get_client(sync_client=True) as client:
        tables = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["training-summary-models"]))
        )
    ours = [table.data for table in tables if str(table.flow_run_id) in flow_runs]
    rows = [row for data in ours for row in (json.loads(data) if isinstance(data, str) else data)]
    assert {row["model"] for row in rows} == {name for _, name in MODELS}
    assert {row["gate"] for row in rows} == {"PASS"}


def test_pretrained_resnet_trains_in_two_phases_and_reloads_with_the_same_probabilities(
    trained, registry, tmp_path: Path
) -> None:
    import keras

    from pipeline.train.inputs import predict_files
    from pipeline.train.models import BASE_LAYER

    resnet = trained.summary.models["resnet"]
    assert {"cache", "head", "fine_tune"} <= set(resnet.train_phases)
    model = registry.load_version("pneumonia-resnet", "1")
    # Reloaded from MLflow: the probabilities the evaluation reported for the test split.
    folder = registry.client.download_artifacts(resnet.run_id, "evaluation", str(tmp_path))
    reported = pd.read_csv(Path(folder) / "test_predictions.csv")
    paths = [str(trained.data / path) for path in reported["path"]]
    np.testing.assert_allclose(predict_files(model, paths), reported["probability"], atol=1e-5)
    # BatchNormalization kept ImageNet's statistics through both phases.
    imagenet = keras.applications.ResNet50(
        include_top=False, weights=str(SHARED_WEIGHTS), input_shape=(32, 32, 3)
    )
    for layer in imagenet.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            saved = model.get_layer(BASE_LAYER).get_layer(layer.name).get_weights()
            for got, want in zip(saved, layer.get_weights(), strict=True):
                np.testing.assert_array_equal(got, want)


def test_plots_and_reports_are_run_artifacts(trained, registry) -> None:
    for kind, _ in MODELS:
        run_id = trained.summary.models[kind].run_id
        names = {Path(a.path).name for a in registry.client.list_artifacts(run_id, "evaluation")}
        assert {
            "confusion_matrix.png", "roc_pr.png", "gradcam.png", "training_curves.png",
            "augmentation.png", "classification_report.txt", "metrics.json", "calibration.json",
            "reliability.png", "subgroups.csv", "shift_robustness.csv",
        } <= names  # fmt: skip
        model_files = {Path(a.path).name for a in registry.client.list_artifacts(run_id, "model")}
        assert "MLmodel" in model_files
        run = registry.client.get_run(run_id)
        assert 0.0 <= run.data.metrics["test_roc_auc"] <= 1.0
        assert run.info.status == "FINISHED"


CARD_SECTIONS = (
    "Model details", "Intended use", "Training data", "Metrics", "Calibration",
    "Gate and approval", "Subgroups", "Grad-CAM examples", "Limitations and known failure modes",
    "Ethical considerations",
)  # fmt: skip


def test_each_version_has_a_model_card_with_the_runs_numbers(
    trained_env, registry, monkeypatch
) -> None:
    from flows.cli import app
    from pipeline.data.shifts import DRIFT_KINDS

    for kind, name in MODELS:
        model = trained_env.summary.models[kind]
        run = registry.client.get_run(model.run_id)
        card = json.loads(registry.read_run_file(run.info.run_id, "model_card/model_card.json"))
        markdown = registry.read_run_file(run.info.run_id, "model_card/model_card.md").decode()
        page = registry.read_run_file(run.info.run_id, "model_card/model_card.html").decode()
        for section in CARD_SECTIONS:
            assert f"## {section}" in markdown and f"<h2>{section}</h2>" in page, section
        # Real numbers: the card's are the run's own.
        assert card["metrics"]["roc_auc"] == pytest.approx(run.data.metrics["test_roc_auc"])
        assert card["metrics"]["ece"] == pytest.approx(run.data.metrics["test_ece"])
        assert card["data"]["splits"]["train"]["images"] == int(run.data.params["train_images"])
        assert card["data"]["splits"]["test"]["patients"] > 0
        assert card["threshold"]["value"] == pytest.approx(float(run.data.tags["threshold"]))
        assert card["calibration"]["description"] == run.data.tags["calibration"]
        assert card["gate"]["reasons"] == run.data.tags["gate_reasons"].split("; ")
        assert [s["shift"] for s in card["shifts"]] == list(DRIFT_KINDS)
        assert all(s["n"] > 0 for s in card["shifts"]) and card["subgroups"]
        auc = f"{card['metrics']['roc_auc']:.3f} [{card['metrics']['roc_auc_ci_low']:.3f}"
        assert auc in markdown and auc in page
        # Self-contained: both figures inlined, nothing fetched from elsewhere.
        assert page.count('src="data:image/png;base64,') == 2
        assert "http" not in page.replace(run.info.run_id, "")
        version = registry.client.get_model_version(name, model.version)
        assert "Model card: " in version.description
        printed = runner.invoke(app, ["card", name, model.version])
        assert printed.exit_code == 0, printed.output
        assert printed.output.strip() == markdown.strip()
        monkeypatch.setenv("BROWSER", "true")  # `--open` hands the page to a no-op browser
        opened = runner.invoke(app, ["card", name, "--open"])  # no version: the champion's
        assert opened.exit_code == 0, opened.output
        champion = champion_of(registry, name)
        written = trained_env.home / "reports" / "cards" / f"{name}-v{champion}.html"
        assert f"model card: {written}" in opened.output and written.read_text().startswith(
            "<!doctype html>"
        )


def test_worse_second_run_does_not_move_the_champion(worse_run, registry) -> None:
    second, before = worse_run
    for kind, name in MODELS:
        result = second.models[kind]
        assert int(result.version) >= 2
        spread = result.metrics["score_max"] - result.metrics["score_min"]
        assert spread < 1e-6 and result.collapsed
        assert not result.gate_passed and not result.champion
        assert result.gate_reasons[0].startswith("collapsed: every test image scored")
        assert champion_of(registry, name) == before[name]
        challenger = registry.client.get_model_version_by_alias(name, "challenger")
        assert str(challenger.version) == result.version
        assert registry.client.get_model_version(name, result.version).tags["gate_passed"] == (
            "false"
        )


def test_promote_refuses_a_failed_version_unless_forced_and_rollback_undoes_it(
    worse_run, trained_env, registry
) -> None:
    from flows.cli import app

    failed = worse_run[0].models["resnet"].version
    before = champion_of(registry, "pneumonia-resnet")
    refused = runner.invoke(app, ["promote", "pneumonia-resnet", failed, "--reason", "try"])
    assert refused.exit_code == 1 and "did not pass its gate" in refused.output
    assert champion_of(registry, "pneumonia-resnet") == before

    forced = runner.invoke(
        app, ["promote", "pneumonia-resnet", failed, "--reason", "radiologist review", "--force"]
    )
    assert forced.exit_code == 0, forced.output
    promoted = registry.client.get_model_version_by_alias("pneumonia-resnet", "champion")
    assert str(promoted.version) == failed
    assert promoted.tags["champion_reason"] == "forced promotion: radiologist review"
    assert promoted.tags["previous_champion"] == before and promoted.tags["champion_by"]

    back = runner.invoke(app, ["rollback", "pneumonia-resnet", "--reason", "false positives"])
    assert back.exit_code == 0, back.output
    restored = registry.client.get_model_version_by_alias("pneumonia-resnet", "champion")
    assert str(restored.version) == before
    assert restored.tags["champion_reason"] == f"rollback from version {failed}: false positives"
    missing_version = str(latest_version(registry, "pneumonia-resnet") + 1)
    missing = runner.invoke(app, ["promote", "pneumonia-resnet", missing_version, "--reason", "x"])
    assert missing.exit_code == 1 and f"has no version '{missing_version}'" in missing.output
    unknown = runner.invoke(app, ["promote", "pneumonia-foo", "1", "--reason", "x"])
    assert unknown.exit_code == 1 and "no registered model 'pneumonia-foo'" in unknown.output
