"""The drift-quality benchmark in its --quick mode, on the end-to-end champion and real images."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.drift_quality import RULES, rule_name
from pipeline.data.shifts import DRIFT_KINDS
from pipeline.settings import DriftConfig
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
    assert set(results["rule"]) == set(RULES)  # every candidate rule scored on the same checks
    production = results[results["rule"] == rule_name(DriftConfig())]
    iid = production[production["test"] == "iid"]
    assert len(iid) == 1 and iid["image_shift_rate"].iloc[0] <= 0.1
    assert set(production["test"]) == {"iid", *(k for k in DRIFT_KINDS if k != "none")}
    # A washed-out film moves every intensity statistic: found even with the tiny champion.
    assert production.loc[production["test"] == "contrast", "image_shift_rate"].iloc[0] >= 0.8
    assert "smallest batch with <= 5% and >= 95%" in done.stdout
