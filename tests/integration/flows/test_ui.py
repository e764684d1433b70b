"""`pneumo ui` as users run it: both UIs answer on loopback, Ctrl-C stops both."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest

from flows.ui import is_up
from tests import processes
from tests.conftest import REPO
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def test_ui_serves_mlflow_and_prefect_on_the_state_dir_and_ctrl_c_stops_both(
    tmp_path: Path,
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PNEUMO_", "MLFLOW_", "PREFECT_"))
    }
    env |= {"PNEUMO_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    log = tmp_path / "ui.log"
    command = [sys.executable, "-m", "flows.cli", "ui"]
    with processes.running("pneumo ui", command, env=env, cwd=REPO, log=log) as process:
        out = wait_until(
            lambda: log.read_text(errors="replace"),
            lambda text: "Ctrl-C stops both" in text or process.poll() is not None,
            timeout=180,
            what="pneumo ui to print both URLs",
        )
        urls = dict(re.findall(r"^(MLflow UI|Prefect UI): (http://127\.0\.0\.1:\d+)$", out, re.M))
        assert set(urls) == {"MLflow UI", "Prefect UI"}, out
        assert is_up(f"{urls['MLflow UI']}/health")
        assert is_up(f"{urls['Prefect UI']}/api/health")
        # The Prefect UI reads the embedded state's database, not one of its own.
        assert (tmp_path / "home" / "prefect" / "prefect.db").is_file()

        os.kill(process.pid, signal.SIGINT)  # what Ctrl-C sends
        assert process.wait(timeout=60) == 0, log.read_text(errors="replace")[-3000:]
    assert "stopping both" in log.read_text()
    for url in urls.values():
        assert not is_up(url), f"{url} still answers after Ctrl-C"
