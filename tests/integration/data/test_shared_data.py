"""Ingest + validate the full shared datasets (original-size sample and all 5,216 train images)."""

from pathlib import Path

import pytest

from pipeline.adapters.storage import LocalStore
from pipeline.data.steps import ingest_dataset, validate_dataset
from pipeline.settings import Settings
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.integration


def need(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"shared dataset {path} is not present (set PNEUMO_SHARED_DATA)")
    return path


def expected_files(root: Path) -> tuple[int, int]:
    """(files, distinct contents) listed in the dataset's MANIFEST.sha256."""
    digests = [line.split()[0] for line in (root / "MANIFEST.sha256").read_text().splitlines()]
    return len(digests), len(set(digests))


def test_original_sample_ingests_and_validates(tmp_path: Path) -> None:
    root = need(SHARED_DATA / "chest_xray_sample")
    settings = Settings(home=tmp_path)
    store = LocalStore(settings.store_dir)
    summary = ingest_dataset(root, store, settings)
    assert (summary.stored, summary.already_stored) == (343, 0)
    assert expected_files(root) == (343, 343)
    assert summary.quarantine.empty
    validation = validate_dataset(store, settings)
    assert validation.report.success, validation.report.failures
    assert validation.report.warnings == []
    assert validation.counts.loc["test", "total"] == 70


@pytest.mark.slow
def test_full_train224_ingests_and_validates(tmp_path: Path) -> None:
    root = need(SHARED_DATA / "chest_xray_train224")
    settings = Settings(home=tmp_path)
    store = LocalStore(settings.store_dir)
    summary = ingest_dataset(root, store, settings)
    # 26 files repeat another file of the same patient byte for byte: stored once each.
    assert expected_files(root) == (5216, 5190)
    assert (summary.stored, summary.already_stored) == (5190, 26)
    counts = summary.counts
    # No val/ or test/ here: both are carved from train by patient.
    assert set(counts.index) == {"train", "val", "test"}
    assert counts["total"].sum() == 5216
    validation = validate_dataset(store, settings)
    assert validation.report.success, validation.report.failures
    assert [w.description for w in validation.report.warnings] == ["sha256 unique"]
    assert next(w for w in validation.report.warnings).failing_rows == 26 + 24
