import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.adapters.storage import LocalStore
from pipeline.data.ingest import MANIFEST_COLUMNS, IngestError, ingest_folder
from pipeline.settings import ScopeConfig, Settings
from tests.conftest import SAMPLE, image_bytes, make_dataset, write


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
    assert manifest.loc["train/NORMAL/notes.txt", "issue"] == "not a JPEG, PNG or DICOM image"
    assert manifest.loc["train/NORMAL/notes.txt", "quarantined"]


def test_images_are_told_by_content_not_by_name(
    tmp_path: Path, store: LocalStore, settings: Settings
) -> None:
    make_dataset(tmp_path, {"train": {"IM-0001": 1}})
    normal = tmp_path / "train" / "NORMAL"
    write(normal / "IM-0002-0001.jfif", image_bytes(seed=2))
    write(normal / "IM-0003-0001", image_bytes(seed=3, fmt="PNG"))
    dicom = b"\0" * 128 + b"DICM" + b"\0" * 64
    write(normal / "IM-0004-0001.png", dicom)
    manifest = ingest_folder(tmp_path, store, settings.ingest).manifest.set_index("path")
    for name, suffix in (("IM-0002-0001.jfif", ".jpeg"), ("IM-0003-0001", ".png")):
        row = manifest.loc[f"train/NORMAL/{name}"]
        assert not row.quarantined and row.key.endswith(suffix), name
    # Read as DICOM whatever its name: this one holds no film.
    assert manifest.loc["train/NORMAL/IM-0004-0001.png", "issue"] == (
        "DICOM: a DICOM file without pixel data (not an image)"
    )


def test_links_and_special_files_are_recorded_never_followed(
    tmp_path: Path, store: LocalStore, settings: Settings
) -> None:
    secret = tmp_path / "outside" / "shadow"
    write(secret, image_bytes(seed=9))  # readable and a valid image: only the link keeps it out
    data = tmp_path / "data"
    make_dataset(data, {"train": {"IM-0001": 1}})
    normal = data / "train" / "NORMAL"
    (normal / "x.jpeg").symlink_to(secret)
    (normal / "linked-folder").symlink_to(secret.parent, target_is_directory=True)
    os.mkfifo(normal / "pipe.jpeg")
    result = ingest_folder(data, store, settings.ingest)
    manifest = result.manifest.set_index("path")
    issues = manifest["issue"].dropna().to_dict()
    assert issues == {
        "train/NORMAL/linked-folder": "symbolic link, not followed",
        "train/NORMAL/pipe.jpeg": "not a regular file (named pipe)",
        "train/NORMAL/x.jpeg": "symbolic link, not followed",
    }
    assert manifest.loc[list(issues), "quarantined"].all()
    assert manifest.loc[list(issues), "key"].isna().all()
    stored = [store.get(key) for key in store.list("raw/")]
    assert secret.read_bytes() not in stored and result.stored == 1


def test_an_unreadable_file_is_quarantined_and_the_ingest_goes_on(
    tmp_path: Path, store: LocalStore, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.files

    make_dataset(tmp_path, {"train": {"IM-0001": 1}})
    locked = write(tmp_path / "train" / "NORMAL" / "IM-0002-0001.jpeg", image_bytes(seed=2))
    read = pipeline.files.read_regular

    def refuse_locked(path: Path) -> bytes:
        # chmod 000 does not stop root (CI runs as root): the OS's refusal, as it arrives.
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return read(path)

    monkeypatch.setattr(pipeline.files, "read_regular", refuse_locked)
    manifest = ingest_folder(tmp_path, store, settings.ingest).manifest.set_index("path")
    row = manifest.loc["train/NORMAL/IM-0002-0001.jpeg"]
    assert row.quarantined and row.issue == "unreadable: Permission denied"
    assert len(manifest) == 2 and manifest["quarantined"].sum() == 1


def test_dicom_films_keep_their_original_and_only_a_keyed_patient(
    tmp_path: Path, store: LocalStore, settings: Settings
) -> None:
    from tests.dicom import PHI, gray_film, make_dicom

    film = gray_film(sorted((SAMPLE / "train" / "NORMAL").glob("*.jpeg"))[0]).astype(np.uint16)
    files = {
        "a.dcm": make_dicom(film * 16, bits_stored=12, photometric="MONOCHROME2"),
        "b.dcm": make_dicom((255 - film) * 16, bits_stored=12, photometric="MONOCHROME1"),
        "c.dcm": make_dicom(film * 16, bits_stored=12, patient_id="MRN-00000002"),
    }
    for name, data in files.items():
        write(tmp_path / "train" / "NORMAL" / name, data)
    manifest = ingest_folder(
        tmp_path, store, settings.ingest, patient_secret=lambda: "test-secret"
    ).manifest.set_index("path")
    rows = {name: manifest.loc[f"train/NORMAL/{name}"] for name in files}
    for name, row in rows.items():
        assert not row.quarantined, row.issue
        assert store.get(row.original_key) == files[name]  # the original, byte for byte
        assert row.key.startswith("rendered/") and row.bit_depth == 12
    assert rows["b.dcm"]["mode"] == "DICOM MONOCHROME1"
    # One patient's films share a key; another patient's differ; the PatientID is not stored.
    assert rows["a.dcm"].patient_id == rows["b.dcm"].patient_id != rows["c.dcm"].patient_id
    text = manifest.reset_index().to_csv()
    assert not [value for value in PHI.values() if value in text]


def test_a_dicom_film_outside_the_intended_use_is_quarantined(
    tmp_path: Path, store: LocalStore, settings: Settings
) -> None:
    from tests.dicom import gray_film, make_dicom

    film = gray_film(sorted((SAMPLE / "train" / "NORMAL").glob("*.jpeg"))[0])
    write(tmp_path / "train" / "NORMAL" / "a.dcm", make_dicom(film, bits_stored=8))
    adult = make_dicom(film, bits_stored=8, tags={"ViewPosition": "PA", "PatientAge": "034Y"})
    write(tmp_path / "train" / "NORMAL" / "b.dcm", adult)
    manifest = ingest_folder(
        tmp_path, store, settings.ingest, patient_secret=lambda: "test-secret"
    ).manifest.set_index("path")
    assert not manifest.loc["train/NORMAL/a.dcm", "quarantined"]
    row = manifest.loc["train/NORMAL/b.dcm"]
    assert row.quarantined and row.issue == (
        "outside intended use: PatientAge 034Y (the training films are of children aged 1 to 5)"
    )
    # The rule is the deployment's: a site that trains on older children says so.
    older = ScopeConfig(age_years=(1, 40))
    again = ingest_folder(
        tmp_path, store, settings.ingest, patient_secret=lambda: "s", scope_cfg=older
    )
    assert not again.manifest["quarantined"].any()
