"""Labels that arrive after scoring: parsed, stored append-only, superseded, matched."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from pipeline.adapters.storage import LocalStore
from pipeline.monitor.labels import (
    LABELS_PREFIX,
    LabelsError,
    add_labels,
    current_labels,
    join_labels,
    read_labels,
)
from pipeline.predict.inference_log import append_inference_log
from tests.conftest import SAMPLE

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
SHA_A = "a" * 64


def scored(rows: list[tuple[str, str, float, str]], when: datetime = NOW) -> pd.DataFrame:
    """Inference-log rows: (image, sha256, probability, version)."""
    return pd.DataFrame(
        {
            "image": [r[0] for r in rows],
            "sha256": [r[1] for r in rows],
            "probability": [r[2] for r in rows],
            "threshold": 0.5,
            "label": ["PNEUMONIA" if r[2] >= 0.5 else "NORMAL" for r in rows],
            "model_version": [r[3] for r in rows],
            "timestamp": pd.Timestamp(when),
        }
    )


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_labels_are_stored_once_and_unmatched_ones_kept(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    append_inference_log(store, scored([("x.jpeg", SHA_A, 0.9, "1")]), NOW)
    csv = write_csv(
        tmp_path / "reads.csv",
        f"image,label,reader,read_at\n{SHA_A.upper()},pneumonia,dr-a,2026-12-01T08:00\n"
        "never-scored.jpeg,NORMAL,dr-a,\n",
    )
    added = add_labels(store, csv, 10_000_000, now=NOW)
    assert (added.added, added.matched, added.superseding) == (2, 1, 0)
    assert added.unmatched == ["never-scored.jpeg"]
    assert len(store.list(f"{LABELS_PREFIX}/")) == 1
    stored = read_labels(store)
    assert list(stored["key_kind"]) == ["sha256", "image"]  # a digest is told by its form
    assert stored["key"].iloc[0] == SHA_A and stored["label"].iloc[0] == "PNEUMONIA"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image,label\nx.jpeg,maybe\ny.jpeg,NORMAL\n,PNEUMONIA\n", "2 bad rows, none added"),
        ("image,label\nx.jpeg,maybe\n", "line 2: label 'maybe' is not NORMAL or PNEUMONIA"),
        ("image,label\n,NORMAL\n", "line 2: no image"),
        ("image,label,read_at\nx.jpeg,NORMAL,yesterday\n", "read_at 'yesterday' is not a date"),
        ("name,label\nx.jpeg,NORMAL\n", "no image column"),
        ("image,label\n", "no rows"),
        ("", "empty file"),
    ],
)
def test_bad_labels_are_named_and_nothing_is_written(
    tmp_path: Path, text: str, message: str
) -> None:
    store = LocalStore(tmp_path / "store")
    with pytest.raises(LabelsError, match=message) as raised:
        add_labels(store, write_csv(tmp_path / "bad.csv", text), 10_000_000, now=NOW)
    assert "bad.csv" in str(raised.value)
    assert store.list(f"{LABELS_PREFIX}/") == []


def test_a_missing_source_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match=r"nowhere\.csv: no such file or folder"):
        add_labels(LocalStore(tmp_path), tmp_path / "nowhere.csv", 10_000_000)


def test_a_later_read_supersedes_and_the_earlier_one_stays_stored(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    first = write_csv(tmp_path / "1.csv", "image,label,read_at\nx.jpeg,NORMAL,2026-12-01\n")
    second = write_csv(tmp_path / "2.csv", "image,label,read_at\nx.jpeg,PNEUMONIA,2026-12-03\n")
    add_labels(store, first, 10_000_000, now=NOW)
    again = add_labels(store, second, 10_000_000, now=NOW + timedelta(days=3))
    assert again.superseding == 1
    every = read_labels(store)
    assert list(every["label"]) == ["NORMAL", "PNEUMONIA"]  # the history
    assert list(current_labels(every)["label"]) == ["PNEUMONIA"]
    # A read dated earlier, added later, does not override the newer read.
    late = write_csv(tmp_path / "3.csv", "image,label,read_at\nx.jpeg,NORMAL,2026-11-30\n")
    add_labels(store, late, 10_000_000, now=NOW + timedelta(days=4))
    assert list(current_labels(read_labels(store))["label"]) == ["PNEUMONIA"]


def test_a_labels_folder_is_matched_by_content_whatever_the_files_are_called(
    tmp_path: Path,
) -> None:
    film = sorted((SAMPLE / "test" / "NORMAL").iterdir())[0]
    digest = hashlib.sha256(film.read_bytes()).hexdigest()
    (tmp_path / "reads" / "NORMAL").mkdir(parents=True)
    shutil.copy2(film, tmp_path / "reads" / "NORMAL" / "renamed.jpeg")  # one class is enough
    store = LocalStore(tmp_path / "store")
    append_inference_log(store, scored([(film.name, digest, 0.2, "1")]), NOW)
    added = add_labels(store, tmp_path / "reads", 10_000_000, now=NOW)
    assert (added.added, added.matched, added.unmatched) == (1, 1, [])
    joined = join_labels(scored([(film.name, digest, 0.2, "1")]), read_labels(store))
    assert list(joined["truth"]) == [0] and joined["patient_id"].iloc[0]


def test_join_counts_an_image_scored_twice_by_a_version_once(tmp_path: Path) -> None:
    log = pd.concat(
        [
            scored([("x.jpeg", SHA_A, 0.2, "1")], NOW),
            scored([("x.jpeg", SHA_A, 0.7, "1"), ("x.jpeg", SHA_A, 0.6, "2")], NOW + timedelta(1)),
            scored([("y.jpeg", "b" * 64, 0.9, "2")]),
        ],
        ignore_index=True,
    )
    store = LocalStore(tmp_path)
    add_labels(store, write_csv(tmp_path / "l.csv", f"image,label\n{SHA_A},NORMAL\n"), 10**7)
    add_labels(store, write_csv(tmp_path / "m.csv", "image,label\ny.jpeg,PNEUMONIA\n"), 10**7)
    joined = join_labels(log, current_labels(read_labels(store)))
    by = joined.set_index(["model_version", "image"])
    assert sorted(by.index) == [("1", "x.jpeg"), ("2", "x.jpeg"), ("2", "y.jpeg")]
    assert by.loc[("1", "x.jpeg"), "probability"] == 0.7  # its latest score
    assert by.loc[("2", "y.jpeg"), "truth"] == 1
    assert by.loc[("1", "x.jpeg"), "label"] == "PNEUMONIA"  # the served label stays
    assert by.loc[("1", "x.jpeg"), "truth"] == 0


def test_the_latest_read_counts_whether_it_names_the_digest_or_the_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    by_digest = write_csv(tmp_path / "a.csv", f"image,label,read_at\n{SHA_A},NORMAL,2026-12-01\n")
    by_name = write_csv(tmp_path / "b.csv", "image,label,read_at\nx.jpeg,PNEUMONIA,2026-12-02\n")
    add_labels(store, by_name, 10**7, now=NOW)
    add_labels(store, by_digest, 10**7, now=NOW + timedelta(days=1))  # added later, read earlier
    joined = join_labels(scored([("x.jpeg", SHA_A, 0.2, "1")]), read_labels(store))
    assert list(joined["truth"]) == [1] and len(joined) == 1
