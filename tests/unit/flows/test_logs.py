"""Library notes leave the console but stay in the log file; --verbose shows them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# Run in a fresh interpreter: routing logs is what the CLI does to its own process.
SCRIPT = """
import logging, sys, warnings
from pathlib import Path
from flows import runtime

runtime.route_logs(Path(sys.argv[1]), verbose=sys.argv[2] == "1")
runtime.route_logs(Path(sys.argv[1]), verbose=sys.argv[2] == "1")  # a second flow, same process
logging.getLogger("tensorflow").warning("5 out of the last 13 calls triggered retracing")
logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.INFO)
logging.getLogger("great_expectations.data_context.types.base").info("Created temporary dir")
warnings.warn("invalid value encountered in divide", RuntimeWarning, stacklevel=1)
logging.getLogger("tensorflow").error("a real TensorFlow error")
logging.getLogger("prefect.flow_runs").warning("a flow's own warning")
"""
NOTES = ("retracing", "Created temporary dir", "invalid value encountered")


def run(home: Path, verbose: bool) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(home), "1" if verbose else "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout + done.stderr, (home / "logs" / "pneumo.log").read_text()


@pytest.mark.slow  # imports Prefect in a fresh interpreter (~5 s)
def test_library_notes_go_to_the_log_file_not_the_console(tmp_path: Path) -> None:
    console, logged = run(tmp_path, verbose=False)
    for note in NOTES:
        assert note not in console
        assert logged.count(note) == 1, logged  # once: one file handler after two set-ups
    assert "a real TensorFlow error" in console and "a flow's own warning" in console


@pytest.mark.slow
def test_verbose_shows_library_notes_on_the_console(tmp_path: Path) -> None:
    console, _ = run(tmp_path, verbose=True)
    for note in NOTES:
        assert note in console
