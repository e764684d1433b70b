"""`pneumo demo-loop` as a user runs it: traffic through a real service with the challenger in
shadow, labels, the performance check, a retraining held as challenger, the comparison."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import SAMPLE
from tests.e2e.cli import pneumo, registry_of

pytestmark = pytest.mark.slow
NAME = "pneumonia-resnet"


def site_films(root: Path, per_class: int) -> Path:
    for label in ("NORMAL", "PNEUMONIA"):
        (root / label).mkdir(parents=True)
        for source in sorted((SAMPLE / "test" / label).iterdir())[:per_class]:
            shutil.copy2(source, root / label / source.name)
    return root


def test_the_loop_shadows_labels_retrains_and_keeps_the_champion_without_evidence(
    ingested: dict[str, str], tmp_path: Path
) -> None:
    from pipeline.adapters.backends import open_store
    from pipeline.predict.inference_log import read_inference_log
    from pipeline.settings import Settings

    code, out = pneumo(["train"], ingested, tmp_path / "train.log")
    assert code == 0, out[-3000:]
    registry = registry_of(ingested)
    champion = str(registry.champion_version(NAME).version)

    films = site_films(tmp_path / "site", 8)
    code, out = pneumo(["demo-loop", "--films", str(films)], ingested, tmp_path / "loop.log")
    assert code == 0, out[-3000:]
    retrained = str(registry.alias_version(NAME, "challenger").version)
    assert retrained != champion
    # Shadow evidence is required and 8 films a class are too few for it: the retrained
    # version passed its (open) gate but stays challenger.
    assert str(registry.champion_version(NAME).version) == champion
    assert "held as challenger" in registry.version(NAME, retrained).tags["promotion"]
    assert f"champion stays v{champion}: not enough evidence" in out

    log = read_inference_log(open_store(Settings(home=Path(ingested["PNEUMO_HOME"]))))
    first, second = (log[log["model_version"].astype(str) == v] for v in (champion, retrained))
    # Every film answered by the champion (both batches); the second batch's also by the
    # retrained challenger in shadow, none dropped.
    assert len(first) == 16 and set(first["alias"]) == {"champion"}
    assert len(second) > 0 and set(second["alias"]) == {"challenger"}
    assert set(second["sha256"]) < set(first["sha256"])
    assert "dropped: none" in out.split("3. the second batch")[1]
    for step in ("1. the first batch", "2. its labels", "4. the comparison"):
        assert step in out
