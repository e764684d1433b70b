"""`batch-predict` end to end: shards scored on two local Dask workers, logged, and resumed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from pipeline.adapters.backends import open_store
from pipeline.predict.inference_log import LOG_PREFIX, REJECTED_PREFIX
from pipeline.settings import Settings
from tests.conftest import SAMPLE
from tests.e2e.conftest import champion_of

pytestmark = pytest.mark.slow


def archive(root: Path) -> Path:
    """Ten real films and one file that is no image."""
    folder = root / "archive"
    folder.mkdir()
    for label in ("NORMAL", "PNEUMONIA"):
        for path in sorted((SAMPLE / "test" / label).iterdir())[:5]:
            shutil.copyfile(path, folder / path.name)
    (folder / "notes.jpeg").write_text("not an image")
    return folder


def test_shards_score_in_parallel_log_each_shard_and_a_rerun_resumes(
    trained_env, registry, tmp_path: Path
) -> None:
    from flows.batch_predict import batch_predict

    folder, out = archive(tmp_path), tmp_path / "all.csv"
    first = batch_predict(str(folder), shard_size=4, workers=2, out=str(out))
    assert (first.shards, first.scored_now, first.skipped_done) == (3, 3, 0)
    assert (first.images_scored, first.images_rejected) == (10, 1)
    scored = pd.read_csv(out)
    assert len(scored) == 10 and scored["probability"].between(0, 1).all()
    assert set(scored["model_version"].astype(str)) == {champion_of(registry, "pneumonia-resnet")}

    store = open_store(Settings(home=trained_env.home))
    job = first.job
    logged = [k for k in store.list(f"{LOG_PREFIX}/") if f"batch-{job}-" in k]
    assert len(logged) == 3  # one inference-log object per shard
    assert len([k for k in store.list(f"{REJECTED_PREFIX}/") if f"batch-{job}-" in k]) == 1

    # A run that died after shard 0 and 2: only shard 1 is scored again, its log not doubled.
    (trained_env.home / "store" / f"batch-jobs/{job}/shards/000001.parquet").unlink()
    again = batch_predict(str(folder), shard_size=4, workers=1, out=str(out))
    assert (again.job, again.skipped_done, again.scored_now) == (job, 2, 1)
    assert len(pd.read_csv(out)) == 10
    assert len([k for k in store.list(f"{LOG_PREFIX}/") if f"batch-{job}-" in k]) == 3
