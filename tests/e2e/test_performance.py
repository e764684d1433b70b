"""Labels arrive, realised performance is checked: `pneumo predict`, `pneumo labels add` and
`pneumo performance` on real films with the trained champion."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLE
from tests.e2e.conftest import Trained, champion_of

pytestmark = pytest.mark.slow

runner = CliRunner()


def pneumo(*args: str):
    from flows.cli import app

    return runner.invoke(app, list(args))


def films(root: Path, per_class: int) -> Path:
    """`root/{NORMAL,PNEUMONIA}/` with real films of the sample's test split."""
    for label in ("NORMAL", "PNEUMONIA"):
        (root / label).mkdir(parents=True)
        for source in sorted((SAMPLE / "test" / label).iterdir())[-per_class:]:
            shutil.copy2(source, root / label / source.name)
    return root


def last_check(home: Path) -> dict:
    return json.loads((home / "store" / "reports/performance/last-check.json").read_text())


def test_labels_join_the_log_and_a_drop_is_alerted(
    trained_env: Trained, registry, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("PNEUMO_PERFORMANCE__MIN_PER_CLASS", "3")
    version = champion_of(registry, "pneumonia-resnet")
    folder = films(tmp_path / "reads", 4)
    scored = pneumo("predict", str(folder), "--out", str(tmp_path / "scored.csv"))
    assert scored.exit_code == 0, scored.output

    added = pneumo("labels", "add", str(folder))
    assert added.exit_code == 0, added.output
    assert "added 8 labels" in added.output and "8 name scored images" in added.output

    checked = pneumo("performance", "--version", version, "--no-retrain")
    assert checked.exit_code in (0, 1), checked.output
    summary = last_check(trained_env.home)
    (mine,) = summary["versions"]
    assert mine["version"] == version and mine["films"]["films"] == 8
    assert mine["films"]["NORMAL"] == 4 and mine["films"]["PNEUMONIA"] == 4
    assert f"v{version}: 8 labelled films" in checked.output
    assert (checked.exit_code == 1) == summary["alert"]
    report = summary["report_uris"][version].removeprefix("file://")
    assert "<html" in Path(report).read_text()[:2000].lower()

    # Reads contradicting every served label: sensitivity and specificity both 0, a drop of
    # whichever the version was validated above the tolerance on.
    with (tmp_path / "scored.csv").open() as handle:
        served = list(csv.DictReader(handle))
    flipped = tmp_path / "flipped.csv"
    with flipped.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "reader"])
        for row in served:
            other = "NORMAL" if row["label"] == "PNEUMONIA" else "PNEUMONIA"
            digest = hashlib.sha256((folder / row["image"]).read_bytes()).hexdigest()
            writer.writerow([digest, other, "second-reader"])
    relabelled = pneumo("labels", "add", str(flipped))
    assert relabelled.exit_code == 0, relabelled.output
    assert "(8 replace earlier reads" in relabelled.output

    checked = pneumo("performance", "--version", version, "--no-retrain")
    (mine,) = last_check(trained_env.home)["versions"]
    for metric in ("sensitivity", "specificity"):
        if math.isnan(mine["metrics"][metric]):  # no film of the class it counts
            continue
        assert mine["metrics"][metric] == 0.0
        counted = mine["films"]["PNEUMONIA" if metric == "sensitivity" else "NORMAL"]
        should_drop = mine["validated"][metric] > 0.05 and counted >= 3  # tolerance, minimum
        assert (metric in mine["dropped"]) == should_drop, mine["reasons"]
    assert (checked.exit_code == 1) == bool(mine["dropped"]), checked.output
    assert ("ALERT performance drop" in checked.output) == bool(mine["dropped"])


def test_a_bad_labels_file_adds_nothing_and_names_the_row(
    trained_env: Trained, tmp_path: Path
) -> None:
    store = trained_env.home / "store" / "labels"
    before = sorted(store.rglob("*.parquet")) if store.exists() else []
    bad = tmp_path / "reads.csv"
    bad.write_text("image,label\nx.jpeg,NORMAL\ny.jpeg,consolidation\n")
    result = pneumo("labels", "add", str(bad))
    assert result.exit_code == 1
    assert "line 3: label 'consolidation' is not NORMAL or PNEUMONIA" in result.output
    after = sorted(store.rglob("*.parquet")) if store.exists() else []
    assert after == before
