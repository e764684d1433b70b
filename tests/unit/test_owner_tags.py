"""One owner scheme for MLflow runs (tags) and Prefect flow runs (string labels)."""

from __future__ import annotations

import socket
import subprocess
import sys

from pipeline import processes


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_labels_round_trip_to_the_same_owner() -> None:
    mine = processes.owner()
    labels = [*processes.as_labels(mine), "training", "url:http://x"]
    assert processes.from_labels(labels) == mine


def test_a_run_of_a_dead_process_on_this_host_is_orphaned() -> None:
    host = socket.gethostname()
    assert processes.is_orphaned({processes.OWNER_HOST: host, processes.OWNER_PID: str(dead_pid())})
    assert not processes.is_orphaned(processes.owner())


def test_another_host_or_no_owner_is_never_orphaned() -> None:
    elsewhere = {processes.OWNER_HOST: "another-host", processes.OWNER_PID: str(dead_pid())}
    assert not processes.is_orphaned(elsewhere)
    assert not processes.is_orphaned({})
    assert not processes.is_orphaned({processes.OWNER_HOST: socket.gethostname()})
