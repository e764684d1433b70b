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


def test_a_flat_folder_numbers_its_patients_apart(
    small_dataset: Path, store, settings, tmp_path: Path
) -> None:
    """Kermany restarts `personN` in each official split: a site's IM-0100 is not the dataset's."""
    from pipeline.data.manifest import load_manifest
    from pipeline.data.steps import add_labeled, count_new_labeled, ingest_dataset
    from tests.conftest import make_dataset

    ingest_dataset(small_dataset, store, settings)
    # IM-0100 is a test patient of the dataset; laid out flat, the film is the site's own.
    flat = make_dataset(tmp_path / "site", {"train": {"IM-0100": 1, "person77": 1}}, seed=901)
    flat = flat / "train"  # DIR/{NORMAL,PNEUMONIA}/
    assert count_new_labeled(flat, store, settings) == 2
    summary = add_labeled(flat, store, settings)
    assert summary.added == 2 and summary.left_out.empty
    _, manifest = load_manifest(store)
    added = manifest[manifest["origin"] == "labeled"]
    assert set(added["patient_id"]) == {"local:IM-0100", "local:person77"}


def labelled(patients: dict[str, str], prefix: str = "n") -> pd.DataFrame:
    """One film per patient: {patient: label}."""
    return pd.DataFrame(
        {
            "path": [f"{prefix}{i}" for i in range(len(patients))],
            "patient_id": list(patients),
            "label": list(patients.values()),
            "split": [None] * len(patients),
            "sha256": [f"{prefix}-{p}" for p in patients],
        }
    )


def test_a_share_of_new_patients_only_judges_and_keeps_judging() -> None:
    manifest = pd.DataFrame(
        {"path": ["a"], "patient_id": ["p0"], "label": ["NORMAL"], "split": ["train"],
         "sha256": ["s0"]}
    )  # fmt: skip
    first = labelled({f"q{i}": ("NORMAL" if i % 2 else "PNEUMONIA") for i in range(20)})
    merged, _ = merge_labeled(manifest, first, judge_fraction=0.5, seed=1)
    new = merged[merged["origin"] == "labeled"]
    site = set(new.loc[new["split"] == "site", "patient_id"])
    assert set(new["split"]) == {"train", "site"} and 8 <= len(site) <= 12
    assert set(new.loc[new["split"] == "site", "label"]) == {"NORMAL", "PNEUMONIA"}
    # A second round: films of judging patients stay judging, of training patients training.
    again = labelled({"q0": "PNEUMONIA", "q1": "NORMAL"}, prefix="m")
    merged2, _ = merge_labeled(merged, again, judge_fraction=0.5, seed=2)
    latest = merged2.tail(2).set_index("patient_id")["split"]
    for patient in ("q0", "q1"):
        assert latest[patient] == ("site" if patient in site else "train")
    assert merge_labeled(manifest, first)[0]["split"].tail(20).eq("train").all()  # fraction 0
