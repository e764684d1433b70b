"""The MLflow adapter: each Registry reaches its own tracking URI and leaves the process alone."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.adapters.registry import Candidate, Registry, RegistryError
from pipeline.settings import Settings, TrainConfig
from pipeline.train.models import build_cnn

pytestmark = pytest.mark.slow  # saves and reloads a Keras model: a few seconds


def candidate() -> Candidate:
    return Candidate(
        kind="cnn",
        params={"image_size": 32},
        metrics={"roc_auc": 0.9, "pr_auc": float("nan")},
        history={"loss": [0.7, 0.5]},
        artifacts=[],
        tags={"threshold": "0.4", "gate_passed": "true"},
        input_example=np.zeros((1, 32, 32, 1), np.float32),
    )


def test_two_registries_in_one_process_keep_to_their_own_state(tmp_path: Path) -> None:
    environment = dict(os.environ)
    first = Registry.from_settings(Settings(home=tmp_path / "a"))
    second = Registry.from_settings(Settings(home=tmp_path / "b"))
    model = build_cnn(TrainConfig(image_size=32))

    run_id, version = first.log_candidate(candidate(), model)
    first.move_champion("pneumonia-cnn", version, "test")

    assert str(first.champion_version("pneumonia-cnn").version) == version
    assert second.champion_version("pneumonia-cnn") is None
    with pytest.raises(RegistryError, match="no registered model 'pneumonia-cnn'"):
        second.version("pneumonia-cnn", version)
    assert dict(os.environ) == environment  # no tracking URI exported for later code to inherit
    assert (tmp_path / "a" / "mlflow.db").is_file() and not (
        tmp_path / "b" / "mlartifacts"
    ).exists()

    run = first.client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["test_roc_auc"] == 0.9
    assert "test_pr_auc" not in run.data.metrics  # NaN metrics are not logged
    assert run.data.tags["threshold"] == "0.4" and run.data.tags["mlflow.user"]
    reloaded = first.load_version("pneumonia-cnn", version)
    example = candidate().input_example
    np.testing.assert_allclose(
        reloaded.predict(example, verbose=0), model.predict(example, verbose=0)
    )
