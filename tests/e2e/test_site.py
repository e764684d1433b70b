"""Site acceptance end to end: `pneumo site accept` on real films with the trained champion."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLE
from tests.e2e.conftest import Trained, champion_of

pytestmark = pytest.mark.slow

runner = CliRunner()


def site_folder(root: Path, per_class: int, offset: int = 0) -> Path:
    """`root/{NORMAL,PNEUMONIA}/` with real films of the sample's test split (not trained on)."""
    for label in ("NORMAL", "PNEUMONIA"):
        (root / label).mkdir(parents=True)
        for source in sorted((SAMPLE / "test" / label).iterdir())[offset : offset + per_class]:
            shutil.copy2(source, root / label / source.name)
    return root


def accept(*args: str):
    from flows.cli import app

    return runner.invoke(app, ["site", "accept", *args, "--by", "site-physicist"])


def test_site_acceptance_is_recorded_served_carded_and_replaced(
    trained_env: Trained, registry, tmp_path: Path
) -> None:
    from flows.service import champion_holder
    from pipeline.adapters.registry import threshold_of
    from pipeline.predict.champion import load_champion
    from pipeline.settings import Settings

    name = "pneumonia-resnet"
    version = champion_of(registry, name)
    holder = champion_holder(registry, Settings())
    assert holder.refresh()
    before = holder.current.threshold

    first = accept(str(site_folder(tmp_path / "first", 6)))
    assert first.exit_code in (0, 1), first.output
    assert ("NOT ACCEPTED" in first.output) == (first.exit_code == 1)
    tags = registry.client.get_model_version(name, version).tags
    site_threshold = float(tags["site_threshold"])
    assert f"site threshold {site_threshold:.4f}" in first.output
    assert tags["site_accepted"] == ("true" if first.exit_code == 0 else "false")
    assert tags["site_accepted_by"] == "site-physicist"
    assert f"previous threshold {before:.4f}" in first.output
    assert "roc_auc" in first.output and "[" in first.output  # intervals printed

    # In force for every consumer of the version's threshold, the service included.
    version_now = registry.client.get_model_version(name, version)
    assert threshold_of(version_now) == site_threshold
    assert load_champion(registry, tmp_path / "cache").threshold == site_threshold
    assert holder.refresh() and holder.current.threshold == site_threshold

    card = registry.read_run_file(version_now.run_id, "model_card/model_card.md").decode()
    assert "## Site validation" in card and tags["site_manifest_id"] in card
    assert f"Served threshold {site_threshold:.4f}" in card

    # A re-run on other films replaces the threshold in force; the history keeps both.
    second = accept(str(site_folder(tmp_path / "second", 5, offset=6)))
    assert second.exit_code in (0, 1), second.output
    again = registry.client.get_model_version(name, version).tags
    assert again["site_acceptance_id"] != tags["site_acceptance_id"]
    assert again["site_manifest_id"] != tags["site_manifest_id"]
    history = registry.client.list_artifacts(version_now.run_id, "site_acceptance")
    records = [
        json.loads(registry.read_run_file(version_now.run_id, entry.path)) for entry in history
    ]
    assert {r["manifest_id"] for r in records} >= {
        tags["site_manifest_id"],
        again["site_manifest_id"],
    }
    card = json.loads(registry.read_run_file(version_now.run_id, "model_card/model_card.json"))
    assert [h["manifest_id"] for h in card["site_validation"]][-2:] == [
        tags["site_manifest_id"],
        again["site_manifest_id"],
    ]
    assert holder.refresh() and holder.current.threshold == float(again["site_threshold"])


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "no such folder"),
        ("no_classes", "expected NORMAL/ and PNEUMONIA/ folders"),
        ("one_class", "no PNEUMONIA films"),
    ],
)
def test_a_bad_site_folder_is_a_clear_error(
    trained_env: Trained, registry, tmp_path: Path, layout: str, message: str
) -> None:
    folder = tmp_path / "films"
    if layout == "no_classes":
        (folder / "misc").mkdir(parents=True)
    elif layout == "one_class":
        (folder / "NORMAL").mkdir(parents=True)
        shutil.copy2(next((SAMPLE / "test" / "NORMAL").iterdir()), folder / "NORMAL" / "a.jpeg")
    before = registry.champion_version("pneumonia-resnet").tags.get("site_acceptance_id")
    result = accept(str(folder))
    assert result.exit_code == 1
    assert f"error: labelled films {folder}" in result.output and message in result.output
    after = registry.champion_version("pneumonia-resnet").tags.get("site_acceptance_id")
    assert after == before  # nothing recorded
