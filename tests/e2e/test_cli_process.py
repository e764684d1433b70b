"""`pneumo predict` then `pneumo drift` as a user runs them: fresh processes, another folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import processes
from tests.conftest import REPO
from tests.e2e.conftest import Trained

pytestmark = pytest.mark.slow


def pneumo(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> tuple[int, str]:
    return processes.run_pneumo(args, env=env, cwd=cwd, log=log)


# What TensorFlow's C++ start-up and Prefect's temporary server print unasked.
NOISE = ("absl::InitializeLog", "oneDNN custom operations", "#how-to-guides")


def assert_no_library_noise(out: str, home: Path) -> None:
    """The command's output (stdout and stderr) opens with results, not library notes; the
    TensorFlow lines are kept in the log file."""
    assert not [line for line in out.splitlines() if any(n in line for n in NOISE)], out[:3000]
    assert "oneDNN custom operations" in (home / "logs" / "pneumo.log").read_text()


def test_drift_runs_on_its_own_from_another_folder(trained: Trained, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PNEUMO_", "MLFLOW_", "PREFECT_API"))
    }
    env |= {
        "PNEUMO_HOME": str(trained.home),
        "PNEUMO_DRIFT__MIN_CURRENT": "10",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        # The CLI is run from another folder: it finds the project's modules by path only.
        "PYTHONPATH": str(REPO),
    }
    code, out = pneumo(["predict", str(trained.data / "test")], env, elsewhere, tmp_path / "p.log")
    assert code == 0, out[-3000:]
    assert_no_library_noise(out, trained.home)
    # The champion may be a retrained version by now; either way its weights are named.
    assert "(champion; weights: " in out and ") scored 10 images" in out

    code, out = pneumo(
        ["drift", "--last", "10", "--no-retrain"], env, elsewhere, tmp_path / "d.log"
    )
    assert code == 0, out[-3000:]
    assert_no_library_noise(out, trained.home)
    verdicts = [
        line
        for line in out.splitlines()
        if line.startswith(("no drift (report: ", "drift detected (report: ", "prevalence shift"))
    ]
    assert len(verdicts) == 1, out[-3000:]
    assert "10 current vs" in out
    assert list(elsewhere.iterdir()) == []  # no mlflow.db, mlruns or reports beside the user
    assert not (REPO / "mlflow.db").exists() and (trained.home / "mlflow.db").is_file()
