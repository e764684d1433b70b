from pathlib import Path

import pandas as pd

from pipeline.data.validation import validate_manifest
from pipeline.settings import ValidationConfig


def failed(report) -> dict[str, list[str]]:
    return {c.description: c.examples for c in report.failures}


def test_clean_manifest_passes_and_writes_data_docs(manifest: pd.DataFrame, tmp_path: Path) -> None:
    report = validate_manifest(manifest, ValidationConfig(min_rows=5), tmp_path / "docs")
    assert report.success, report.failures
    assert len(report.checks) >= 15
    assert report.docs_path.is_file() and "manifest" in report.docs_path.read_text()


def test_patient_leak_between_carved_splits_fails(manifest: pd.DataFrame) -> None:
    leaked = manifest.copy()
    leaked.loc[leaked.index[(leaked.patient_id == "IM-0003")][0], "split"] = "val"
    leaked.loc[leaked.index[(leaked.patient_id == "IM-0003")][1], "split"] = "train"
    failures = failed(validate_manifest(leaked, ValidationConfig(min_rows=5)))
    assert "no patient across the carved train/val splits" in failures
    assert all("IM-0003" in e for e in failures["no patient across the carved train/val splits"])


def test_too_few_rows_and_bad_sizes_fail(manifest: pd.DataFrame) -> None:
    report = validate_manifest(manifest, ValidationConfig(min_rows=1000, min_side=100))
    failures = failed(report)
    assert "at least 1000 rows" in failures
    assert failures["width within [100, 8192] px"][0].endswith("(width=96)")


def test_class_imbalance_is_a_warning_not_a_failure(manifest: pd.DataFrame) -> None:
    report = validate_manifest(manifest, ValidationConfig(min_rows=5, max_pneumonia_share=0.3))
    assert report.success
    assert [w.description for w in report.warnings] == ["PNEUMONIA share per split within bounds"]


def test_a_file_never_read_is_a_quarantine_warning_but_a_stored_one_must_have_its_key(
    manifest: pd.DataFrame,
) -> None:
    # A link recorded by ingest: quarantined with its reason, no key or sha256 (nothing read).
    link = manifest.iloc[[0]].assign(
        path="train/NORMAL/x.jpeg", key=None, sha256=None, bytes=0, decodable=False,
        issue="symbolic link, not followed", quarantined=True,
    )  # fmt: skip
    with_link = pd.concat([manifest, link], ignore_index=True)
    report = validate_manifest(with_link, ValidationConfig(min_rows=5))
    assert report.success, report.failures
    assert "no quarantined files" in [w.description for w in report.warnings]
    lost = manifest.copy()
    lost.loc[lost.index[0], "key"] = None
    assert "key is never empty for a usable file" in failed(
        validate_manifest(lost, ValidationConfig(min_rows=5))
    )
