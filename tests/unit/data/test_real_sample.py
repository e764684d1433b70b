"""Ingest + validate a copy of the bundled real sample, with bad files added, through the CLI."""

import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app
from pipeline.adapters.storage import LocalStore
from pipeline.data.manifest import load_manifest
from tests.conftest import SAMPLE, write

runner = CliRunner()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def sample_with_bad_files(tmp_path: Path) -> Path:
    root = shutil.copytree(
        SAMPLE, tmp_path / "chest_xray", ignore=shutil.ignore_patterns("*.md", "*.sha256")
    )
    good = (
        root / "train" / "NORMAL" / sorted(p.name for p in (root / "train" / "NORMAL").iterdir())[0]
    )
    jpeg = good.read_bytes()
    write(root / "train" / "NORMAL" / "IM-9001-0001.jpeg", b"")
    write(root / "train" / "PNEUMONIA" / "person9002_bacteria_1.jpeg", jpeg[: len(jpeg) // 3])
    write(root / "test" / "NORMAL" / "IM-9003-0001.jpeg", b"Patient notes: not an image\n")
    write(root / "test" / "NORMAL" / "IM-9004-0001.jpeg", jpeg)  # train image copied into test
    buffer = io.BytesIO()
    Image.fromarray(np.full((300, 400), 40000, dtype=np.uint16)).save(buffer, "PNG")
    write(root / "val" / "PNEUMONIA" / "person9005_virus_1.png", buffer.getvalue())
    return root


@pytest.mark.slow
def test_bad_files_are_quarantined_and_cross_split_duplicate_fails(
    sample_with_bad_files: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("PNEUMO_HOME", str(tmp_path / "home"))
    ingest = runner.invoke(app, ["ingest", str(sample_with_bad_files)])
    assert ingest.exit_code == 0, ingest.output
    assert "quarantined files: 4" in ingest.output

    store = LocalStore(tmp_path / "home" / "store")
    _, manifest = load_manifest(store)
    issues = manifest.set_index("path")["issue"].dropna().to_dict()
    assert issues == {
        "train/NORMAL/IM-9001-0001.jpeg": "empty file (0 bytes)",
        "train/PNEUMONIA/person9002_bacteria_1.jpeg": issues[
            "train/PNEUMONIA/person9002_bacteria_1.jpeg"
        ],
        "test/NORMAL/IM-9003-0001.jpeg": "not a JPEG, PNG or DICOM image",
        "val/PNEUMONIA/person9005_virus_1.png": (
            "unsupported mode 'I;16' (16-bit, 1 bands); expected 8-bit L or RGB"
        ),
    }
    assert issues["train/PNEUMONIA/person9002_bacteria_1.jpeg"].startswith(
        "truncated or corrupt image data"
    )
    quarantine = pd.read_csv(store.uri(f"reports/{manifest_id_of(store)}/quarantine.csv"))
    assert set(quarantine["path"]) == set(issues)

    good = manifest[~manifest["quarantined"]]
    originals = {
        p.relative_to(sample_with_bad_files).as_posix(): p
        for p in sample_with_bad_files.rglob("*.*")
    }
    assert len(good) == 826 + 1  # the bundled sample plus the duplicate, which decodes fine
    for row in good.itertuples():
        stored = store.get(row.key)
        assert sha256(stored) == row.sha256 == sha256(originals[row.path].read_bytes())

    validate = runner.invoke(app, ["validate"])
    assert validate.exit_code == 1
    failure = validate.output.split("FAILED: no identical image across splits")[1].split("FAILED")[
        0
    ]
    duplicate_of = next(
        p
        for p, f in originals.items()
        if p.startswith("train/NORMAL/")
        and f.read_bytes() == originals["test/NORMAL/IM-9004-0001.jpeg"].read_bytes()
    )
    assert "test/NORMAL/IM-9004-0001.jpeg" in failure and duplicate_of in failure
    assert "warning: no quarantined files (4 rows)" in validate.output
    assert "critical data checks failed" in validate.output


def manifest_id_of(store: LocalStore) -> str:
    return store.get("manifests/LATEST").decode()


@pytest.mark.slow
def test_bundled_sample_ingests_and_validates_with_reports(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PNEUMO_HOME", str(tmp_path / "home"))
    assert runner.invoke(app, ["ingest", str(SAMPLE)]).exit_code == 0
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    docs = Path(result.output.split("Data Docs: ")[1].split()[0])
    assert docs.is_file()
    for name in ("class_distribution.png", "sample_grid.png"):
        assert (docs.parent.parent / name).stat().st_size > 10_000


def test_bad_setting_is_named_in_the_error(monkeypatch) -> None:
    monkeypatch.setenv("PNEUMO_SPLIT__VAL_FRACTION", "2")
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 2
    assert "PNEUMO_SPLIT__VAL_FRACTION='2': Input should be less than 1" in result.output
