from pathlib import Path

from pipeline.adapters.storage import LocalStore
from pipeline.data.ingest import ingest_folder
from pipeline.data.manifest import (
    load_manifest,
    manifest_id,
    patients_across_official_splits,
    save_manifest,
)
from pipeline.data.split import assign_splits
from pipeline.settings import Settings, SplitConfig
from tests.conftest import make_dataset


def test_manifest_id_depends_on_content_not_row_order(
    small_dataset: Path, store: LocalStore, settings: Settings
) -> None:
    manifest = assign_splits(
        ingest_folder(small_dataset, store, settings.ingest).manifest, SplitConfig()
    )
    assert manifest_id(manifest) == manifest_id(manifest.sample(frac=1, random_state=0))
    changed = manifest.copy()
    changed.loc[0, "label"] = "NORMAL" if changed.loc[0, "label"] == "PNEUMONIA" else "PNEUMONIA"
    assert manifest_id(changed) != manifest_id(manifest)


def test_save_then_load_latest_round_trips(
    small_dataset: Path, store: LocalStore, settings: Settings
) -> None:
    manifest = assign_splits(
        ingest_folder(small_dataset, store, settings.ingest).manifest, SplitConfig()
    )
    version, is_new = save_manifest(store, manifest)
    assert is_new and save_manifest(store, manifest) == (version, False)
    loaded_version, loaded = load_manifest(store)
    assert loaded_version == version
    assert manifest_id(loaded) == version
    assert sorted(loaded["path"]) == sorted(manifest["path"])


def test_patient_ids_shared_across_official_splits_are_reported(
    tmp_path: Path, store: LocalStore, settings: Settings
) -> None:
    make_dataset(
        tmp_path, {"train": {"person5": 1, "IM-0001": 1}, "test": {"person5": 1, "IM-0002": 1}}
    )
    shared = patients_across_official_splits(
        ingest_folder(tmp_path, store, settings.ingest).manifest
    )
    assert shared.to_dict("records") == [
        {"patient_id": "person5", "source_splits": ["test", "train"]}
    ]
