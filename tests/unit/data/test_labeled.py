"""Newly labelled images join the training split, never val or test patients."""

from pathlib import Path

import pandas as pd

from pipeline.data.split import merge_labeled


def test_new_labels_never_join_val_or_test_patients() -> None:
    manifest = pd.DataFrame(
        {
            "path": ["a", "b"],
            "patient_id": ["p1", "p2"],
            "split": ["train", "test"],
            "sha256": ["s1", "s2"],
        }
    )
    labeled = pd.DataFrame(
        {
            "path": ["n1", "n2", "n3"],
            "patient_id": ["p9", "p2", "p3"],
            "split": [None] * 3,
            "sha256": ["s9", "s8", "s1"],
        }
    )
    merged, left_out = merge_labeled(manifest, labeled)
    assert list(merged["path"]) == ["a", "b", "n1"] and merged["split"].iloc[-1] == "train"
    assert dict(zip(left_out["path"], left_out["reason"], strict=True)) == {
        "n2": "patient is in val/test",
        "n3": "already in the manifest",
    }


def test_labelled_images_join_the_latest_manifest_train_split(
    small_dataset: Path, store, settings, tmp_path: Path
) -> None:
    from pipeline.data.manifest import load_manifest
    from pipeline.data.steps import add_labeled, count_new_labeled, ingest_dataset
    from tests.conftest import make_dataset

    ingest_dataset(small_dataset, store, settings)
    labeled = make_dataset(tmp_path / "labeled", {"train": {"IM-0500": 2, "IM-0100": 1}}, seed=900)
    # What a drift check reads before deciding to retrain: the same count, nothing stored.
    stored = len(store.list(""))
    assert count_new_labeled(labeled, store, settings) == 2 and len(store.list("")) == stored
    assert count_new_labeled(tmp_path / "no-inbox-yet", store, settings) == 0
    (tmp_path / "empty-inbox" / "train").mkdir(parents=True)
    assert count_new_labeled(tmp_path / "empty-inbox", store, settings) == 0
    summary = add_labeled(labeled, store, settings)
    assert count_new_labeled(labeled, store, settings) == 0  # added now
    version, manifest = load_manifest(store)
    assert version == summary.manifest_id and summary.added == 2
    assert set(manifest.loc[manifest["patient_id"] == "IM-0500", "split"]) == {"train"}
    assert list(summary.left_out["reason"]) == [
        "patient is in val/test"
    ]  # IM-0100 is a test patient
