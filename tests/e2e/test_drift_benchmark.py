"""The drift-quality benchmark in its --quick mode, on the end-to-end champion and real images."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.monitor.simulate import DRIFT_KINDS
from tests.conftest import REPO, SAMPLE
from tests.e2e.conftest import Trained

pytestmark = pytest.mark.slow


def test_quick_benchmark_checks_its_own_false_alarms_and_measures_every_shift(
    trained: Trained, tmp_path: Path
) -> None:
    out = tmp_path / "drift_quality.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PNEUMO_", "MLFLOW_"))}
    command = [sys.executable, "-m", "benchmarks.drift_quality", "--home", str(trained.home)]
    command += ["--pool", str(SAMPLE), "--quick", "--max-false-alarms", "0.1", "--out", str(out)]
    done = subprocess.run(
        command,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    results = pd.read_csv(out)
    iid = results[results["test"] == "iid"]
    assert len(iid) == 1 and iid["image_shift_rate"].iloc[0] <= 0.1
    assert set(results["test"]) == {"iid", *(k for k in DRIFT_KINDS if k != "none")}
    # A washed-out film moves every intensity statistic: found even with the tiny champion.
    assert results.loc[results["test"] == "contrast", "image_shift_rate"].iloc[0] >= 0.8
