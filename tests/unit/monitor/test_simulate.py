"""Simulated acquisition shifts."""

from pathlib import Path

import pytest

from pipeline.monitor.simulate import simulate_batch
from tests.conftest import SAMPLE


def test_simulated_batch_never_overwrites(tmp_path: Path) -> None:
    source = SAMPLE / "val"
    assert simulate_batch(source, tmp_path / "out", "noise") == 16
    with pytest.raises(FileExistsError, match="choose an empty --out folder"):
        simulate_batch(source, tmp_path / "out", "noise")
