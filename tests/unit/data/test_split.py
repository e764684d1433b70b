from pathlib import Path

import pandas as pd

from pipeline.adapters.storage import LocalStore
from pipeline.data.ingest import ingest_folder
from pipeline.data.split import assign_splits
from pipeline.settings import Settings, SplitConfig
from tests.conftest import make_dataset


def patients_per_split(manifest: pd.DataFrame) -> dict[str, set[str]]:
    return {s: set(g["patient_id"]) for s, g in manifest.groupby("split")}


def test_carved_val_shares_no_patient_with_train(
    small_dataset: Path, store: LocalStore, settings: Settings
) -> None:
    manifest = assign_splits(
        ingest_folder(small_dataset, store, settings.ingest).manifest,
        SplitConfig(val_fraction=0.25),
    )
    groups = patients_per_split(manifest)
    assert groups["train"] and not groups["train"] & groups["val"]
    carved = manifest[(manifest.source_split == "train") & (manifest.split == "val")]
    # Stratified: both labels are carved, about a quarter of each label's 24 train images.
    assert carved.groupby("label").size().to_dict() == {"NORMAL": 6, "PNEUMONIA": 6}
    assert (manifest[manifest.source_split == "test"].split == "test").all()
    assert (manifest[manifest.source_split == "val"].split == "val").all()


def test_split_is_reproducible_and_seeded(
    small_dataset: Path, store: LocalStore, settings: Settings
) -> None:
    raw = ingest_folder(small_dataset, store, settings.ingest).manifest
    first = assign_splits(raw, SplitConfig(seed=1))["split"]
    assert first.equals(
        assign_splits(raw.sample(frac=1, random_state=3), SplitConfig(seed=1))["split"].loc[
            first.index
        ]
    )
    assert not first.equals(assign_splits(raw, SplitConfig(seed=2))["split"])


def test_layout_without_val_and_test_carves_both_by_patient(
    tmp_path: Path, store: LocalStore, settings: Settings
) -> None:
    train = {f"IM-{i:04d}": 2 for i in range(20)} | {f"person{i}": 3 for i in range(20)}
    make_dataset(tmp_path, {"train": train})
    manifest = assign_splits(
        ingest_folder(tmp_path, store, settings.ingest).manifest, SplitConfig()
    )
    groups = patients_per_split(manifest)
    assert set(groups) == {"train", "val", "test"}
    assert not (
        groups["train"] & groups["val"]
        or groups["train"] & groups["test"]
        or groups["val"] & groups["test"]
    )
    for split in ("val", "test"):
        assert set(manifest[manifest.split == split].label) == {"NORMAL", "PNEUMONIA"}
