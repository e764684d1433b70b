"""The MLflow adapter: each Registry reaches its own tracking URI and leaves the process alone."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from pipeline.adapters.registry import Candidate, Registry, RegistryError
from pipeline.settings import Settings, TrainConfig
from pipeline.train.models import build_cnn

pytestmark = pytest.mark.slow  # saves and reloads a Keras model: a few seconds


COMPLETE_TAGS = {
    "threshold": "0.4",
    "gate_passed": "true",
    "weights_source": "none (trained from scratch)",
    "image_size": "32",
    "manifest_id": "m1",
}


def candidate(folder: Path | None = None, tags: dict[str, str] = COMPLETE_TAGS) -> Candidate:
    artifacts = []
    if folder is not None:  # an evaluation artifact, as every registered version has
        folder.mkdir(parents=True, exist_ok=True)
        artifacts = [folder / "metrics.json"]
        artifacts[0].write_text("{}")
    return Candidate(
        kind="cnn",
        params={"image_size": 32},
        metrics={"roc_auc": 0.9, "pr_auc": float("nan")},
        history={"loss": [0.7, 0.5]},
        artifacts=artifacts,
        tags=dict(tags),
        input_example=np.zeros((1, 32, 32, 1), np.float32),
    )


def test_two_registries_in_one_process_keep_to_their_own_state(tmp_path: Path) -> None:
    environment = dict(os.environ)
    first = Registry.from_settings(Settings(home=tmp_path / "a"))
    second = Registry.from_settings(Settings(home=tmp_path / "b"))
    model = build_cnn(TrainConfig(image_size=32))

    run_id, version = first.log_candidate(candidate(tmp_path / "evaluation"), model)
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


def test_a_moved_or_copied_state_dir_is_refused_not_written_through(tmp_path: Path) -> None:
    original = Registry.from_settings(Settings(home=tmp_path / "original"))
    original.experiment_id()  # the experiment records its absolute artifact folder
    shutil.copytree(tmp_path / "original", tmp_path / "copy")

    copy = Registry.from_settings(Settings(home=tmp_path / "copy"))
    with pytest.raises(RegistryError, match="was moved or copied") as refused:
        copy.champion_version("pneumonia-cnn")
    assert str((tmp_path / "original" / "mlartifacts").resolve()) in str(refused.value)
    assert str((tmp_path / "copy").resolve()) in str(refused.value)
    # The original itself still works.
    assert original.champion_version("pneumonia-cnn") is None


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> tuple[Registry, list[str]]:
    """Three complete versions of pneumonia-cnn and one without a threshold; no champion yet."""
    tmp = tmp_path_factory.mktemp("registry")
    registry = Registry.from_settings(Settings(home=tmp / "home"))
    model = build_cnn(TrainConfig(image_size=32))
    versions = [registry.log_candidate(candidate(tmp / "evaluation"), model)[1] for _ in range(3)]
    no_threshold = {k: v for k, v in COMPLETE_TAGS.items() if k != "threshold"}
    versions.append(registry.log_candidate(candidate(tmp / "evaluation", no_threshold), model)[1])
    return registry, versions


def test_champion_history_is_append_only_and_rollback_walks_back(registered) -> None:
    registry, (v1, v2, v3, _) = registered
    name = "pneumonia-cnn"
    assert registry.move_champion(name, v1, "first")
    assert registry.move_champion(name, v2, "second")
    assert not registry.promote(name, v2, "again")  # already champion: nothing recorded
    assert registry.move_champion(name, v3, "third")
    history = registry.champion_history(name)
    assert [(e["version"], e["replaced"]) for e in history[-3:]] == [(v1, ""), (v2, v1), (v3, v2)]
    assert registry.rollback(name, "bad") == v2
    assert registry.rollback(name, "worse") == v1
    with pytest.raises(RegistryError, match="replaced no earlier champion"):
        registry.rollback(name, "nothing left")
    assert str(registry.champion_version(name).version) == v1
    assert len(registry.champion_history(name)) == len(history) + 2


def test_a_version_without_threshold_is_refused_and_marked(registered) -> None:
    from pipeline.adapters.registry import threshold_of

    registry, versions = registered
    name, broken = "pneumonia-cnn", versions[-1]
    found = registry.client.get_model_version(name, broken)
    with pytest.raises(RegistryError, match="no usable threshold tag"):
        threshold_of(found)
    with pytest.raises(RegistryError, match=r"incomplete \(tag threshold\)"):
        registry.promote(name, broken, "try", force=True)
    registry.client.set_registered_model_alias(name, "challenger", broken)
    marked = registry.mark_incomplete()
    assert (name, broken, "tag threshold") in marked
    after = registry.client.get_model_version(name, broken)
    assert after.tags["incomplete"] == "tag threshold" and after.aliases == []
    assert registry.mark_incomplete() == []  # marked once


def test_runs_of_a_dead_process_are_failed_and_others_kept(registered) -> None:
    registry, _ = registered
    experiment = registry.experiment_id()
    dead = registry.client.create_run(
        experiment, tags={"pneumo_host": socket.gethostname(), "pneumo_pid": "999999999"}
    )
    mine = registry.client.create_run(
        experiment, tags={"pneumo_host": socket.gethostname(), "pneumo_pid": str(os.getpid())}
    )
    assert registry.fail_orphaned_runs() == [dead.info.run_id]
    assert registry.client.get_run(dead.info.run_id).info.status == "FAILED"
    assert registry.client.get_run(mine.info.run_id).info.status == "RUNNING"
    registry.client.set_terminated(mine.info.run_id)
