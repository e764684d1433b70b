from pathlib import Path

import pytest

from pipeline.adapters.storage import LocalStore
from pipeline.data.ingest import MANIFEST_COLUMNS, IngestError, ingest_folder
from pipeline.settings import Settings
from tests.conftest import image_bytes, make_dataset, write


def test_manifest_has_one_row_per_file_with_every_column(
    small_dataset: Path, store: LocalStore, settings: Settings
) -> None:
    result = ingest_folder(small_dataset.parent, store, settings.ingest)  # finds chest_xray/
    manifest = result.manifest
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)
    assert len(manifest) == 48 + 6 + 2 == result.stored
    row = manifest.set_index("path").loc["train/PNEUMONIA/person3_bacteria_1.jpeg"]
    assert (row.label, row.source_split, row.patient_id, row.subtype) == (
        "PNEUMONIA",
        "train",
        "person3",
        "bacteria",
    )
    assert (row.width, row.height, row["mode"], row.channels, row.bit_depth) == (96, 80, "L", 1, 8)
    assert row.decodable and not row.quarantined and row.bytes > 0
    assert store.get(row.key) == (small_dataset / row.name).read_bytes()


def test_second_ingest_stores_nothing_new(
    small_dataset: Path, store: LocalStore, settings: Settings
) -> None:
    first = ingest_folder(small_dataset, store, settings.ingest)
    objects = store.list()
    second = ingest_folder(small_dataset, store, settings.ingest)
    assert (second.stored, second.already_stored) == (0, first.stored)
    assert store.list() == objects


def test_unknown_label_folder_is_an_error_naming_it(
    tmp_path: Path, store: LocalStore, settings: Settings
) -> None:
    make_dataset(tmp_path, {"train": {"IM-0001": 1}})
    write(tmp_path / "train" / "COVID" / "a.jpeg", image_bytes())
    with pytest.raises(IngestError, match=r"unknown label folder .*train/COVID"):
        ingest_folder(tmp_path, store, settings.ingest)


@pytest.mark.parametrize("make", [lambda p: p / "missing", lambda p: p])
def test_missing_folder_or_layout_is_an_error(
    tmp_path: Path, store: LocalStore, settings: Settings, make
) -> None:
    with pytest.raises(IngestError, match=str(tmp_path)):
        ingest_folder(make(tmp_path), store, settings.ingest)


def test_non_image_file_is_recorded_not_dropped(
    tmp_path: Path, store: LocalStore, settings: Settings
) -> None:
    make_dataset(tmp_path, {"train": {"IM-0001": 1}})
    write(tmp_path / "train" / "NORMAL" / "notes.txt", b"hello")
    write(tmp_path / "train" / "NORMAL" / ".DS_Store", b"finder junk")
    manifest = ingest_folder(tmp_path, store, settings.ingest).manifest.set_index("path")
    assert len(manifest) == 2
    assert manifest.loc["train/NORMAL/notes.txt", "issue"] == "unsupported file extension '.txt'"
    assert manifest.loc["train/NORMAL/notes.txt", "quarantined"]
