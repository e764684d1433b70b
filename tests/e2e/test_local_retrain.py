"""Retraining on a site's labelled films: some only judge, and judge both models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import SAMPLE
from tests.e2e.conftest import Trained

pytestmark = pytest.mark.slow


def local_films(root: Path) -> Path:
    """`root/{NORMAL,PNEUMONIA}/`: real films the champion never trained on, several patients
    per class, so half of them can judge."""
    for label in ("NORMAL", "PNEUMONIA"):
        (root / label).mkdir(parents=True)
        for source in sorted((SAMPLE / "test" / label).iterdir())[20:30]:
            shutil.copy2(source, root / label / source.name)
    return root


@pytest.fixture
def restored_manifest(trained_env: Trained):
    """The shared state's manifest pointer is put back afterwards: the films added here must
    not change what other tests train or judge on."""
    from pipeline.adapters.backends import open_store
    from pipeline.data.manifest import LATEST_KEY
    from pipeline.settings import Settings

    store = open_store(Settings())
    latest = store.get(LATEST_KEY)
    yield store
    store.put(LATEST_KEY, latest, overwrite=True)


def test_judging_films_stay_out_of_training_and_judge_the_challenger(
    trained_env: Trained, registry, restored_manifest, tmp_path: Path
) -> None:
    from flows.monitoring import retrain_champion
    from pipeline.data.manifest import load_manifest
    from pipeline.train.inputs import usable_rows

    summary = retrain_champion(reason="site films", labeled_path=str(local_films(tmp_path / "l")))
    _, manifest = load_manifest(restored_manifest)
    local = manifest[manifest["origin"] == "labeled"]
    judging = usable_rows(manifest, "site")
    training = usable_rows(manifest, "train")
    assert len(judging) and set(judging["label"]) == {"NORMAL", "PNEUMONIA"}
    assert set(local["split"]) == {"train", "site"}  # some train, some judge
    assert not set(judging["sha256"]) & set(training["sha256"])  # by content, not by name
    assert not set(judging["patient_id"]) & set(training["patient_id"])

    resnet = summary.models["resnet"]
    version = registry.client.get_model_version("pneumonia-resnet", resnet.version)
    run = registry.client.get_run(version.run_id)
    # The version was judged on exactly the judging films, and its threshold was set on them.
    judged = pd.read_csv(
        registry.client.download_artifacts(
            version.run_id, "evaluation/test_predictions.csv", str(tmp_path)
        )
    )
    by_path = manifest.set_index("path")["sha256"]
    assert set(by_path[judged["path"]]) == set(judging["sha256"])
    assert "site's held-out films" in version.tags["threshold_rule"]
    assert run.data.params["test_images"] == str(len(judging))
    assert "test_carved_test_roc_auc" in run.data.metrics  # the old split: a regression check
    assert int(run.data.params["train_images"]) == len(training)
